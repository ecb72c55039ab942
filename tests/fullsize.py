"""facebook/s2t-wav2vec2-large-en-de's architecture, the one definition the full-size test, the
benchmarks and the GPU check share. Plain dicts of transformers' config fields; imports nothing
but the standard library, so the GPU machine (no transformers) can use it too.

Per transformers' conversion script: encoder = wav2vec2-large-lv60 (1024 wide, 24 layers, 16
heads, FFN 4096, layer-norm convs with bias, stable layer norm, positional conv 128/16), decoder
= Speech2Text2 (vocab 10224, d_model 256, 7 layers, 4 heads, FFN 2048, relu, scaled embeddings,
1024 positions, untied lm_head); enc_to_dec_proj 1024 -> 256 follows from the widths.
"""

import json

ENCODER = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
               feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, num_conv_pos_embeddings=128,
               num_conv_pos_embedding_groups=16, feat_extract_activation="gelu", hidden_act="gelu")
DECODER = dict(vocab_size=10224, d_model=256, decoder_layers=7, decoder_attention_heads=4, decoder_ffn_dim=2048,
               activation_function="relu", scale_embedding=True, max_target_positions=1024,
               tie_word_embeddings=False, bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2)


def write_vocab(folder) -> None:
    """A vocab.json of DECODER's size (every third token ends a word) and an empty merges.txt."""
    tokens = ["<s>", "<pad>", "</s>", "<unk>"] + [f"t{i}" + ("@@" if i % 3 else "") for i in range(10220)]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("")
