"""Greedy and beam search with transformers 4.40.2 semantics.

Dimension legend: B batch, K beams, V vocabulary, L tokens so far (start token included).

Both searches drive the model through one function, ``step(last_ids (B*K, 1), cache) ->
(logits (B*K, V), cache)``; the model keeps all state in the explicit cache, and beam search
reorders it with ``decoder.reorder_cache``. Scores are float32 like HF's; finished-hypothesis
bookkeeping (``BeamHypotheses``) uses Python floats exactly as HF's does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backend import array_module, to_numpy
from .config import MAX_POSITIONS, MAX_VOCAB
from .decoder import reorder_cache
from .errors import ConfigError
from .layers import log_softmax
from .validate import check_fields, read_json, show

# GenerationConfig fields of transformers 4.40.2 that minis2t2 does not implement. Loading a
# config that sets one of them to a non-default value is an error rather than a silent
# difference; the defaults are HF's.
UNSUPPORTED_DEFAULTS = {
    "do_sample": False,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "penalty_alpha": None,
    "bad_words_ids": None,
    "force_words_ids": None,
    "constraints": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_decoder_ids": None,
    "sequence_bias": None,
    "encoder_repetition_penalty": 1.0,
    "encoder_no_repeat_ngram_size": 0,
    "exponential_decay_length_penalty": None,
    "renormalize_logits": False,
    "remove_invalid_values": False,
    "guidance_scale": None,
    "max_time": None,
    "low_memory": None,
    "prompt_lookup_num_tokens": None,
    "cache_implementation": None,
}
# Fields that only matter for features above (sampling) or for HF's output packaging.
IGNORED_FIELDS = frozenset("""
    temperature top_k top_p typical_p epsilon_cutoff eta_cutoff output_attentions output_hidden_states
    output_scores output_logits return_dict_in_generate transformers_version _from_model_config
    generation_kwargs num_assistant_tokens num_assistant_tokens_schedule max_matching_ngram_size use_cache
""".split())


GENERATION_BOUNDS = {
    "max_length": (1, MAX_POSITIONS), "max_new_tokens": (1, MAX_POSITIONS), "min_length": (0, MAX_POSITIONS),
    "min_new_tokens": (0, MAX_POSITIONS), "num_beams": (1, 1024), "num_return_sequences": (1, 1024),
    "no_repeat_ngram_size": (0, MAX_POSITIONS), "bos_token_id": (0, MAX_VOCAB), "eos_token_id": (0, MAX_VOCAB),
    "pad_token_id": (0, MAX_VOCAB), "decoder_start_token_id": (0, MAX_VOCAB), "forced_bos_token_id": (0, MAX_VOCAB),
    "forced_eos_token_id": (0, MAX_VOCAB),
}


@dataclass(frozen=True)
class GenerationConfig:
    """HF GenerationConfig: the fields minis2t2 implements, with HF's defaults."""

    max_length: int = 20  # total decoder length, the start token included
    max_new_tokens: int | None = None  # if set, wins over max_length: max_length = 1 + max_new_tokens
    min_length: int = 0  # EOS is forbidden while the length (start token included) is below this
    min_new_tokens: int | None = None  # if set, wins over min_length
    num_beams: int = 1  # 1: greedy search
    length_penalty: float = 1.0  # finished beams score sum_logprobs / generated_len ** length_penalty
    early_stopping: bool | str = False  # True, False or "never" (HF's BeamHypotheses.is_done)
    num_return_sequences: int = 1  # best hypotheses returned per input (<= num_beams)
    no_repeat_ngram_size: int = 0  # forbid repeating any n-gram of this size
    repetition_penalty: float = 1.0  # CTRL-style penalty on tokens already generated
    bos_token_id: int | None = None
    eos_token_id: int | list | None = None
    pad_token_id: int | None = None  # fills finished sequences; defaults to the first EOS
    decoder_start_token_id: int | None = None  # first decoder input; defaults to bos_token_id
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | list | None = None

    @classmethod
    def from_dict(cls, d: dict, where: str = "generation config") -> GenerationConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names - set(UNSUPPORTED_DEFAULTS) - IGNORED_FIELDS)
        if unknown:
            raise ConfigError(f"{where}: unknown generation setting(s) {unknown}")
        for key, default in UNSUPPORTED_DEFAULTS.items():
            if key in d and d[key] != default:
                raise ConfigError(f"{where}: {key}={d[key]!r} is not supported by minis2t2 (only {default!r})")
        cfg = cls(**check_fields(cls, d, where, GENERATION_BOUNDS))
        if cfg.early_stopping not in (True, False, "never"):
            raise ConfigError(f"{where}: early_stopping must be true, false or \"never\", got {show(cfg.early_stopping)}")
        if not cfg.repetition_penalty > 0:
            raise ConfigError(f"{where}: repetition_penalty must be > 0, got {show(cfg.repetition_penalty)}")
        return cfg

    @classmethod
    def from_model_folder(cls, folder: str | Path, model_config: dict) -> GenerationConfig:
        """generation_config.json if present, else ``from_model_config(config.json)``."""
        path = Path(folder) / "generation_config.json"
        if path.is_file():
            return cls.from_dict(read_json(path), str(path))
        return cls.from_model_config(model_config)

    @classmethod
    def from_model_config(cls, model_config: dict) -> GenerationConfig:
        """HF's GenerationConfig.from_model_config: the top-level generation fields of config.json,
        then any still at its default filled from the decoder section."""
        names = [f.name for f in dataclasses.fields(cls)] + list(UNSUPPORTED_DEFAULTS)
        defaults = {f.name: f.default for f in dataclasses.fields(cls)} | UNSUPPORTED_DEFAULTS
        d = {k: model_config[k] for k in names if k in model_config}
        decoder = model_config.get("decoder", {})
        for k in names:
            if d.get(k, defaults[k]) == defaults[k] and k in decoder:
                d[k] = decoder[k]
        return cls.from_dict({k: v for k, v in d.items() if v != defaults[k]}, "config.json")

    def update(self, **kwargs) -> GenerationConfig:
        """A copy with ``kwargs`` applied (generate()'s keyword arguments), validated like a file."""
        return GenerationConfig.from_dict(dataclasses.asdict(self) | kwargs, "generate() arguments")


@dataclass(frozen=True)
class SearchSettings:
    """A GenerationConfig resolved for one call: lengths absolute, token ids filled in."""

    max_length: int
    min_length: int
    num_beams: int
    length_penalty: float
    early_stopping: bool | str
    num_return_sequences: int
    no_repeat_ngram_size: int
    repetition_penalty: float
    eos_token_ids: tuple
    pad_token_id: int | None
    start_token_id: int
    forced_bos_token_id: int | None
    forced_eos_token_ids: tuple

    @classmethod
    def resolve(cls, g: GenerationConfig) -> SearchSettings:
        """HF generate()'s preparation: max_new_tokens/min_new_tokens count after the start token."""
        as_tuple = lambda v: () if v is None else (tuple(v) if isinstance(v, (list, tuple)) else (v,))
        eos = as_tuple(g.eos_token_id)
        start = g.decoder_start_token_id if g.decoder_start_token_id is not None else g.bos_token_id
        if start is None:
            raise ConfigError("neither decoder_start_token_id nor bos_token_id is set: no first decoder token")
        max_length = 1 + g.max_new_tokens if g.max_new_tokens is not None else g.max_length
        min_length = 1 + g.min_new_tokens if g.min_new_tokens is not None else g.min_length
        if max_length < 2:
            raise ValueError(f"max_length={max_length} leaves no room for a token after the start token")
        if g.num_beams < 1:
            raise ValueError("num_beams must be >= 1")
        if g.num_beams == 1 and g.num_return_sequences != 1:
            raise ValueError("greedy search returns one sequence: "
                             "num_return_sequences must be 1 (or use num_beams > 1)")
        if g.num_return_sequences > g.num_beams:
            raise ValueError("num_return_sequences must be <= num_beams")
        return cls(
            max_length=max_length,
            min_length=min_length,
            num_beams=g.num_beams,
            length_penalty=g.length_penalty,
            early_stopping=g.early_stopping,
            num_return_sequences=g.num_return_sequences,
            no_repeat_ngram_size=g.no_repeat_ngram_size,
            repetition_penalty=g.repetition_penalty,
            eos_token_ids=eos,
            pad_token_id=g.pad_token_id if g.pad_token_id is not None else (eos[0] if eos else None),
            start_token_id=start,
            forced_bos_token_id=g.forced_bos_token_id,
            forced_eos_token_ids=as_tuple(g.forced_eos_token_id),
        )


def process_logits(ids: np.ndarray, scores, s: SearchSettings):
    """HF's logits processors in HF's order: repetition penalty, no-repeat n-gram, min length,
    forced BOS, forced EOS.   ids (R, L) on the host, scores (R, V) on the model's device -> (R, V)"""
    xp = array_module(scores)
    scores = scores.copy()
    R, L = ids.shape
    if s.repetition_penalty != 1.0:
        rows, cols = xp.asarray(np.arange(R)[:, None]), xp.asarray(ids)  # (R, 1), (R, L)
        seen = scores[rows, cols]  # (R, L)
        scores[rows, cols] = xp.where(seen < 0, seen * s.repetition_penalty, seen / s.repetition_penalty)
    n = s.no_repeat_ngram_size
    if n > 0 and L + 1 >= n:
        for r, row in enumerate(ids.tolist()):  # per-sequence n-gram bookkeeping, on the host
            prefix = tuple(row[L - n + 1 :])
            banned = [row[i + n - 1] for i in range(L - n + 1) if tuple(row[i : i + n - 1]) == prefix]
            if banned:
                scores[r, xp.asarray(banned)] = -np.inf
    if L < s.min_length and s.eos_token_ids:
        scores[:, xp.asarray(s.eos_token_ids)] = -np.inf
    if s.forced_bos_token_id is not None and L == 1:
        scores[:] = -np.inf
        scores[:, s.forced_bos_token_id] = 0
    if s.forced_eos_token_ids and L == s.max_length - 1:
        scores[:] = -np.inf
        scores[:, xp.asarray(s.forced_eos_token_ids)] = 0
    return scores


Step = Callable[[np.ndarray, list], tuple]


def greedy_search(step: Step, cache: list, batch_size: int, s: SearchSettings, scores: list | None = None) -> np.ndarray:
    """HF _greedy_search: argmax of the processed logits; finished rows are filled with pad. -> (B, L)

    The logits stay on the model's device; only the B chosen ids come to the host each step. With
    ``scores`` (a list), each step's processed logits (B, V) are appended to it (HF's output_scores)."""
    ids = np.full((batch_size, 1), s.start_token_id, dtype=np.int64)  # (B, 1)
    unfinished = np.ones(batch_size, dtype=bool)  # (B,); with an EOS there is a pad (SearchSettings.resolve)
    while True:
        logits, cache = step(ids[:, -1:], cache)  # (B, V)
        processed = process_logits(ids, logits, s)  # (B, V)
        if scores is not None:
            scores.append(to_numpy(processed))
        next_tokens = to_numpy(processed.argmax(axis=-1)).astype(np.int64)  # (B,)
        if s.eos_token_ids:
            next_tokens = np.where(unfinished, next_tokens, s.pad_token_id)
        ids = np.concatenate([ids, next_tokens[:, None]], axis=1)  # (B, L + 1)
        unfinished &= ~np.isin(next_tokens, s.eos_token_ids)
        if not unfinished.any() or ids.shape[1] >= s.max_length:
            return ids


class BeamHypotheses:
    """HF BeamHypotheses: the n best finished hypotheses of one input, scored with a length penalty."""

    def __init__(self, num_beams: int, length_penalty: float, early_stopping, max_length: int):
        self.num_beams = num_beams
        self.length_penalty = length_penalty
        self.early_stopping = early_stopping
        self.max_length = max_length
        self.beams: list[tuple[float, np.ndarray]] = []
        self.worst_score = 1e9

    def __len__(self):
        return len(self.beams)

    def add(self, hyp: np.ndarray, sum_logprobs: float, generated_len: int) -> None:
        """Keep ``hyp`` if it is among the best; score = sum_logprobs / generated_len ** length_penalty."""
        score = sum_logprobs / (generated_len**self.length_penalty)
        if len(self) < self.num_beams or score > self.worst_score:
            self.beams.append((score, hyp))
            if len(self) > self.num_beams:
                ranked = sorted((s, i) for i, (s, _) in enumerate(self.beams))
                del self.beams[ranked[0][1]]
                self.worst_score = ranked[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs: float, cur_len: int, prompt_len: int) -> bool:
        """Can no running beam beat the worst kept hypothesis any more?"""
        if len(self) < self.num_beams:
            return False
        if self.early_stopping is True:
            return True
        if self.early_stopping is False or self.length_penalty <= 0.0:
            best_possible = best_sum_logprobs / (cur_len - prompt_len) ** self.length_penalty
        else:  # "never" with a positive penalty: the best score could still come at max_length
            best_possible = best_sum_logprobs / (self.max_length - prompt_len) ** self.length_penalty
        return self.worst_score >= best_possible


def best_first(totals, n: int):
    """Where each row's n largest values are, largest first, ties in index order: the first n
    columns of ``argsort(-totals, kind="stable")``, found without sorting all K*V candidates
    (5 beams x 10,224 tokens: 5.4 ms for the full sort, ~0.3 ms this way).
    totals (B, M) -> (B, n)
    """
    xp = array_module(totals)
    neg = -totals  # smallest first = largest totals first
    nth = xp.partition(neg, n - 1, axis=1)[:, n - 1 : n]  # (B, 1) the n-th best value of each row
    better = neg < nth  # (B, M) all of these are among the n best
    tied = neg == nth  # (B, M) the first of these by index fill the places left
    keep = better | (tied & (xp.cumsum(tied, axis=1) <= n - better.sum(axis=1, keepdims=True)))  # n per row
    kept = xp.nonzero(keep)[1].reshape(-1, n)  # (B, n) in index order
    order = xp.argsort(xp.take_along_axis(neg, kept, axis=1), axis=1, kind="stable")  # (B, n) best first
    return xp.take_along_axis(kept, order, axis=1)


def beam_search(step: Step, cache: list, batch_size: int, s: SearchSettings,
                scores: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """HF _beam_search + BeamSearchScorer. ``cache`` holds B*K rows (each input repeated K times).
    With ``scores`` (a list), each step's processed log-probabilities (B*K, V), before the beams'
    running scores are added, are appended to it (HF's output_scores).

    -> ids (B * num_return_sequences, L), finished hypotheses padded with pad_token_id, and their
    scores (B * num_return_sequences,): sum of log-probs / generated length ** length_penalty,
    what transformers returns as ``sequences_scores``.
    """
    B, K = batch_size, s.num_beams
    prompt_len = 1  # the decoder start token
    ids = np.full((B * K, 1), s.start_token_id, dtype=np.int64)  # (B*K, 1)
    beam_scores = np.zeros((B, K), dtype=np.float32)
    beam_scores[:, 1:] = -1e9  # all beams start identical: only beam 0 may spawn candidates at step 1
    beam_scores = beam_scores.reshape(B * K)  # (B*K,)
    hyps = [BeamHypotheses(K, s.length_penalty, s.early_stopping, s.max_length) for _ in range(B)]
    done = [False] * B
    eos = set(s.eos_token_ids)
    n_candidates = max(2, 1 + len(eos)) * K  # enough that K non-EOS candidates always remain
    while True:
        logits, cache = step(ids[:, -1:], cache)  # (B*K, V)
        xp = array_module(logits)
        logprobs = process_logits(ids, log_softmax(logits), s)  # (B*K, V)
        if scores is not None:
            scores.append(to_numpy(logprobs))
        V = logprobs.shape[-1]
        totals = (logprobs + xp.asarray(beam_scores)[:, None]).reshape(B, K * V)  # (B, K*V)
        best = best_first(totals, n_candidates)  # (B, 2K)
        # only the candidates come to the host: 2K (or more) ids and scores per input
        top, top_scores = to_numpy(best), to_numpy(xp.take_along_axis(totals, best, axis=1))  # (B, 2K)
        cur_len = ids.shape[1] + 1
        next_scores = np.zeros((B, K), dtype=np.float32)
        next_tokens = np.zeros((B, K), dtype=np.int64)
        next_rows = np.zeros((B, K), dtype=np.int64)
        for b in range(B):
            if done[b]:  # a finished input keeps running on pad tokens
                next_tokens[b] = s.pad_token_id
                continue
            k = 0
            for rank, (flat, score) in enumerate(zip(top[b], top_scores[b])):
                row, token = b * K + flat // V, flat % V
                if token in eos:
                    if rank < K:  # EOS only counts from a top-K candidate
                        hyps[b].add(ids[row].copy(), float(score), generated_len=cur_len - prompt_len)
                else:
                    next_scores[b, k], next_tokens[b, k], next_rows[b, k] = score, token, row
                    k += 1
                if k == K:
                    break
            done[b] = done[b] or hyps[b].is_done(float(top_scores[b].max()), cur_len, prompt_len)
        beam_scores = next_scores.reshape(B * K)
        rows = next_rows.reshape(B * K)
        ids = np.concatenate([ids[rows], next_tokens.reshape(B * K, 1)], axis=1)  # (B*K, L + 1)
        cache = reorder_cache(cache, rows)  # the self-attention K/V follow their beams
        if all(done) or ids.shape[1] >= s.max_length:
            break
    return finalize_beams(ids, beam_scores, hyps, done, s)


def finalize_beams(ids, beam_scores, hyps, done, s: SearchSettings) -> tuple[np.ndarray, np.ndarray]:
    """BeamSearchScorer.finalize: add still-running beams, keep the best, pad and append EOS where room.
    -> ids (B * num_return_sequences, L), scores (B * num_return_sequences,)"""
    K, prompt_len = s.num_beams, 1
    for b, hyp in enumerate(hyps):
        if done[b]:
            continue
        for k in range(K):
            row = b * K + k
            hyp.add(ids[row], float(beam_scores[row]), generated_len=ids.shape[1] - prompt_len)
    best, scores = [], []
    for hyp in hyps:
        ranked = sorted(hyp.beams, key=lambda x: x[0])
        for _ in range(s.num_return_sequences):
            score, hyp_ids = ranked.pop()
            best.append(hyp_ids)
            scores.append(score)
    lengths = [len(h) for h in best]
    width = min(max(lengths) + 1, s.max_length)
    if min(lengths) != max(lengths) and s.pad_token_id is None:
        raise ConfigError("pad_token_id has to be defined")
    out = np.full((len(best), width), s.pad_token_id if s.pad_token_id is not None else 0, dtype=np.int64)
    for i, h in enumerate(best):
        out[i, : len(h)] = h
        if len(h) < width:
            out[i, len(h)] = s.eos_token_ids[0]
    return out, np.array(scores, dtype=np.float32)
