"""Greedy codes from the official package, called the way its wrapper calls `model.generate`."""
from __future__ import annotations

GREEDY = dict(do_sample=False, subtalker_dosample=False)


def official_codes(ref, texts, languages, speakers=None, instructs=None, non_streaming_mode=True, max_new_tokens=40):
    ids = ref._tokenize_texts([ref._build_assistant_text(t) for t in texts])
    instructs = instructs or [None] * len(texts)
    instruct_ids = [None if not i else ref._tokenize_texts([ref._build_instruct_text(i)])[0] for i in instructs]
    codes, _ = ref.model.generate(input_ids=ids, instruct_ids=instruct_ids, languages=languages, speakers=speakers,
                                  non_streaming_mode=non_streaming_mode, max_new_tokens=max_new_tokens, **GREEDY)
    return [c.numpy() for c in codes]
