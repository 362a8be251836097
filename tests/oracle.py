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


def official_clone_codes(ref, texts, languages, items, non_streaming_mode=False, max_new_tokens=40):
    """Greedy codes of the official voice clone for prompt items from `ref.create_voice_clone_prompt`, called the
    way `generate_voice_clone` calls `model.generate` (which returns the codes the wrapper then decodes)."""
    ids = ref._tokenize_texts([ref._build_assistant_text(t) for t in texts])
    ref_ids = [None if not it.ref_text else ref._tokenize_texts([ref._build_ref_text(it.ref_text)])[0] for it in items]
    codes, _ = ref.model.generate(input_ids=ids, ref_ids=ref_ids,
                                  voice_clone_prompt=ref._prompt_items_to_voice_clone_prompt(items),
                                  languages=languages, non_streaming_mode=non_streaming_mode,
                                  max_new_tokens=max_new_tokens, **GREEDY)
    return [c.numpy() for c in codes]
