"""tools/demo/judge.py: the shipping rule of the demo model's candidates, applied to eval.json files
made here by hand (the rule's arithmetic is the point, not a model)."""

import json

from tools.demo import judge


def a_set(clips: int, wrong: int, voice: str = "v") -> dict:
    errors = [{"said": f"number {i}", "voice": voice, "got": "null"} for i in range(wrong)]
    return {"description": "", "clips": clips, "exact_match": (clips - wrong) / clips,
            "transformers_token_identical": clips, "errors": errors}


def a_copy(wrong: int, plain_wrong: int = 50) -> dict:
    """the 1 400 synthetic clips cut or padded, ``wrong`` of them wrong, ``plain_wrong`` wrong plain"""
    return {**a_set(1400, wrong), "plain_clips_exact_match": (1400 - plain_wrong) / 1400}


def an_eval(kokoro_wrong=40, clock_wrong=8, espeak_wrong=9, no_number_wrong=68, styles_wrong=11) -> dict:
    return {"espeak_unseen_variants": a_set(300, espeak_wrong), "flite_awb_held_out_voice": a_set(200, 7),
            "kokoro_ja_held_out_voice": a_set(200, kokoro_wrong), "piper_joe": a_set(200, 20),
            "piper_joe_8k": a_set(200, 20), "piper_joe_pooled": a_set(600, 63), "piper_joe_pooled_8k": a_set(600, 69),
            "speaking_style": a_set(240, styles_wrong), "recorded_clock": a_set(25, clock_wrong), "non_speech": a_set(60, 1),
            "recorded_no_number": a_set(69, no_number_wrong), "tight_trim": a_copy(60), "long_silence": a_copy(60),
            "minis2t2_generate_seconds_per_clip": 0.01}


def test_a_gain_with_nothing_fallen_meets_the_rule():
    lines = []
    assert judge.judge(an_eval(), an_eval(kokoro_wrong=30), out=lines.append)  # Kokoro +5 points
    assert "distinct held-out clips: fixed 10, broken 0 (two-sided sign test p = 0.002)" in lines
    assert lines[-2] == "gains reached: Kokoro +3 points" and lines[-1] == "rule: met"


def test_the_clock_floor_and_a_fall_of_more_than_two_points_each_refuse():
    assert not judge.judge(an_eval(), an_eval(kokoro_wrong=30, clock_wrong=9), out=lambda _: None)  # 16 of 25
    assert not judge.judge(an_eval(), an_eval(kokoro_wrong=30, espeak_wrong=16), out=lambda _: None)  # -2.3 points
    assert judge.judge(an_eval(), an_eval(kokoro_wrong=30, espeak_wrong=15), out=lambda _: None)  # -2.0: allowed
    assert not judge.judge(an_eval(), an_eval(), out=lambda _: None)  # nothing fell, nothing gained


def test_the_command_exits_0_1_or_2(tmp_path, capsys):
    shipped, better, same, smaller = (tmp_path / f"{n}.json" for n in ("shipped", "better", "same", "smaller"))
    shipped.write_text(json.dumps(an_eval()))
    better.write_text(json.dumps(an_eval(kokoro_wrong=30)))
    same.write_text(json.dumps(an_eval()))
    other = an_eval()
    other["recorded_clock"] = a_set(24, 8)
    smaller.write_text(json.dumps(other))
    assert judge.main([str(shipped), str(better)]) == 0
    assert judge.main([str(shipped), str(same)]) == 1
    capsys.readouterr()
    assert judge.main([str(shipped), str(smaller)]) == 2
    assert capsys.readouterr().err == (f"{smaller}: set 'recorded_clock' is missing or of another size than in "
                                       f"{shipped}: not the same clips\n")
    (tmp_path / "broken.json").write_text("{")
    assert judge.main([str(shipped), str(tmp_path / "broken.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{tmp_path / 'broken.json'}: not a readable eval.json (JSONDecodeError") and err.count("\n") == 1


def test_reaching_97_percent_counts_only_from_below():
    lines = []
    assert judge.judge(an_eval(espeak_wrong=10), an_eval(espeak_wrong=9), out=lines.append)  # 96.7 -> 97.0%
    assert lines[-2] == "gains reached: espeak-ng variants reaching 97%"
    assert not judge.judge(an_eval(espeak_wrong=9), an_eval(espeak_wrong=8), out=lambda _: None)  # 97.0 -> 97.3%
    lines = []
    assert judge.judge(an_eval(styles_wrong=8), an_eval(styles_wrong=7), out=lines.append)  # 96.7 -> 97.1%
    assert lines[-2] == "gains reached: speaking styles reaching 97%"


def test_ten_more_words_without_a_number_answered_empty_is_a_gain():
    lines = []
    assert judge.judge(an_eval(), an_eval(no_number_wrong=58), out=lines.append)  # 1 -> 11 of 69 empty
    assert lines[-2] == "gains reached: words that are no number: 10 more of 69 empty"
    assert not judge.judge(an_eval(), an_eval(no_number_wrong=59), out=lambda _: None)  # 9 more: not enough


def test_thirty_more_voice_actors_words_answered_empty_is_a_gain_where_both_files_have_the_set():
    shipped, candidate = an_eval(), an_eval()
    shipped["recorded_voice_packs_no_number"] = a_set(243, 200)
    candidate["recorded_voice_packs_no_number"] = a_set(243, 170)  # 43 -> 73 of 243 empty
    lines = []
    assert judge.judge(shipped, candidate, out=lines.append)
    assert lines[-2] == "gains reached: words of nine voice actors that are no number: 30 more of 243 empty"
    candidate["recorded_voice_packs_no_number"] = a_set(243, 171)
    assert not judge.judge(shipped, candidate, out=lambda _: None)
    assert not judge.judge(an_eval(), candidate, out=lambda _: None)  # a shipped file without the set: no gain


def test_a_copy_within_two_points_of_the_plain_clips_stays_within_and_reaching_it_is_a_gain():
    shipped, candidate = an_eval(), an_eval(kokoro_wrong=30)
    shipped["long_silence"], candidate["long_silence"] = a_copy(78), a_copy(79)  # 2.0 -> 2.1 points under plain
    lines = []
    assert not judge.judge(shipped, candidate, out=lines.append)  # Kokoro's gain does not pay for the lost target
    assert any(line.startswith("long_silence") and line.endswith("FALLS  under plain 2.0 -> 2.1") for line in lines)
    shipped["long_silence"], candidate["long_silence"] = a_copy(92), a_copy(78)  # 3.0 -> 2.0 points under plain
    candidate["kokoro_ja_held_out_voice"] = shipped["kokoro_ja_held_out_voice"]
    lines = []
    assert judge.judge(shipped, candidate, out=lines.append)
    assert lines[-2] == "gains reached: 1-2 s of silence: within 2 points of the plain clips"
    candidate["long_silence"] = a_copy(79)  # 2.1 points under plain: not reached
    assert not judge.judge(shipped, candidate, out=lambda _: None)
