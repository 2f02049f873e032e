"""The torch/transformers side of the evaluator: loading a causal LM, one attention function that
serves every method, batched greedy decoding, density recording and recall.

The attention function (registered as "proxyattn_eval") runs, on prefill (q_len == kv_len > 1):
  dense      SDPA;
  proxyattn  proxyattn.hf's ProxyAttn with the model config's `proxyattn` entry (top-k too);
  mask       a plan built by proxyattn.Plan.from_block_mask from the method's block mask, run by
             proxyattn.attend (sink + local window);
and SDPA on decode steps, as proxyattn.hf does. Prompts of a batch are left-padded; the prefill
runs every method on each row's valid tokens (packed with cu_seqlens, or SDPA row by row).
"""
import functools
import inspect
import math

import numpy as np
import torch

from .. import hf
from ..config import Config, config_text
from . import methods as M

NAME = "proxyattn_eval"
RECALL_LOGITS = 1 << 27  # logits held at once by the recall computation (fp32 entries)
_MASK_CONFIG = Config(num_proxy_heads=1)  # what the support check of a block-mask plan reads


class _State:
    def __init__(self):
        self.mode = "dense"
        self.mask = None  # sink_local knobs: {"window", "sink", "block_size"}
        self.plan_cache = None  # (key, plan, masks, densities) of the current batch
        self.batch_density = None  # per-sequence density of the last masked prefill
        self.recall = None  # {(layer, head): [sum, rows]} while measuring recall
        self.valid = None  # [batch, seq] bool: the valid (left-padded) tokens of this prefill


_STATE = _State()


def register():
    """Adds "proxyattn_eval" to transformers' attention and mask interfaces (and proxyattn.hf's
    "proxyattn", whose settings, kernels and density records it uses)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    hf.register("proxyattn")
    AttentionInterface.register(NAME, _forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def _forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
             **kwargs):
    """transformers' attention signature: query [B, H, S, D], key/value [B, Hkv, S_kv, D]
    -> (out [B, S, H, D], None).

    A padded prefill arrives without a mask (a [B, 1, S, S] mask is S^2 bytes per row); the
    valid tokens come from the runner instead, and each method runs on them as packed sequences.
    Decode steps (and any chunked prefill) run SDPA with transformers' mask."""
    st = _STATE
    batch, heads, q_len, dim = query.shape
    if q_len == 1 or q_len != key.shape[2]:
        return hf._sdpa(module, query, key, value, attention_mask, dropout=dropout,
                        scaling=scaling, is_causal=is_causal, **kwargs)
    valid = st.valid
    if valid is None and attention_mask is not None:
        valid = hf._padding_layout(attention_mask, batch, q_len)
        if valid is None:
            raise RuntimeError("proxyattn.eval: an attention mask other than causal padding")
    if valid is not None and bool(valid.all()):
        valid = None
    sdpa_args = (dropout, scaling, is_causal, kwargs)
    if st.mode == "dense":
        return _dense(module, query, key, value, valid, sdpa_args)
    if st.mode == "proxyattn":
        dense_layer, config, args = hf._settings("proxyattn", module, heads, key.shape[1])
        if dense_layer:
            return _dense(module, query, key, value, valid, sdpa_args)
    else:
        config = _MASK_CONFIG
    reason = hf._unsupported(module, query, key, value, None, dropout, is_causal, kwargs, config)
    if reason is not None:  # softcap, sinks, sliding windows, no kernel, ...: SDPA, one warning
        hf._warn_once(reason)
        return _dense(module, query, key, value, valid, sdpa_args)
    q, k, v, cu_t, index = hf._pack(query, key, value, valid)
    cu = [0, q.shape[0]] if cu_t is None else [int(x) for x in cu_t.tolist()]
    if st.mode == "proxyattn":
        if scaling is not None:
            config = config.replace(scale=float(scaling))
            args = (config_text(config.key()),)
        if st.recall is not None:
            _recall_plan(module, q, k, cu, config)
        out = hf._run_prefill(module, q, k, v, cu_t, args, config, scaling)
    else:
        out = _mask_attend(module, q, k, v, cu, scaling)
    return hf._unpack(out, index, batch, q_len), None


def _dense(module, query, key, value, valid, sdpa_args):
    """SDPA, causal; a padded batch runs row by row on each row's valid (suffix) tokens."""
    dropout, scaling, is_causal, kwargs = sdpa_args
    if valid is None:
        return hf._sdpa(module, query, key, value, None, dropout=dropout, scaling=scaling,
                        is_causal=is_causal, **kwargs)
    batch, heads, seq, dim = query.shape
    out = query.new_zeros(batch, seq, heads, dim)
    counts = valid.sum(dim=1).tolist()
    for i, n in enumerate(counts):
        s0 = seq - int(n)
        if n == 0:
            continue
        o, _ = hf._sdpa(module, query[i:i + 1, :, s0:], key[i:i + 1, :, s0:],
                        value[i:i + 1, :, s0:], None, dropout=dropout, scaling=scaling,
                        is_causal=is_causal, **kwargs)
        out[i, s0:] = o[0]
    return out, None


@functools.lru_cache(maxsize=64)
def _sink_local_mask(nb, window, sink, heads):
    mask = np.ascontiguousarray(M.sink_local_mask(nb, window, sink, heads))
    return mask, float(mask[0].sum() / M.causal_blocks(nb))


def _mask_attend(module, q, k, v, cu, scaling):
    """sink + local window: a plan from the block masks (Plan.from_block_mask), then attend.
    The plan serves every layer of the batch."""
    import proxyattn
    st = _STATE
    heads, dim = q.shape[1], q.shape[2]
    b = int(st.mask["block_size"])
    cache_key = (tuple(cu), heads, k.shape[1], dim, str(q.dtype), str(q.device), scaling)
    if st.plan_cache is None or st.plan_cache[0] != cache_key:
        masks, dens = [], []
        for s0, s1 in zip(cu[:-1], cu[1:]):
            mask, d = _sink_local_mask(M.num_blocks(s1 - s0, b), st.mask["window"],
                                       st.mask["sink"], heads)
            masks.append(mask)
            dens.append(d)
        plan = proxyattn.Plan.from_block_mask(masks, q, k, cu_seqlens=cu, block_size=b,
                                              scale=scaling)
        st.plan_cache = (cache_key, plan, masks, dens)
        st.batch_density = dens
    _, plan, masks, _ = st.plan_cache
    if st.recall is not None:
        _recall_accumulate(getattr(module, "layer_idx", None), q, k, cu, masks, b, scaling)
    return proxyattn.attend(q, k, v, plan)


def _recall_plan(module, q, k, cu, config):
    """Recall of ProxyAttn's plan for these packed tokens (the same plan the prefill computes)."""
    import proxyattn
    plan = proxyattn.plan(q, k, cu, config)
    _recall_accumulate(getattr(module, "layer_idx", None), q, k, cu, plan.to_dense(),
                       config.block_size, config.scale)


@torch.no_grad()
def recall_rows(q, k, mask, block_size, scale=None):
    """Per head (sum of recall, rows) over the rows whose selection is incomplete (docs/SPEC.md
    section 4: recall of a row = its dense attention mass kept by the selection, exp(LSE_sparse -
    LSE_dense)). q [N, H, D], k [N, Hkv, D] of one sequence, mask [H, nb, nb] selected blocks.
    Chunked matmuls in fp32 on q's device."""
    n, heads, dim = q.shape
    rep = heads // k.shape[1]
    b = int(block_size)
    nb = M.num_blocks(n, b)
    scale = (1.0 / math.sqrt(dim)) if not scale else float(scale)
    dev = q.device
    mt = torch.as_tensor(np.ascontiguousarray(mask, dtype=bool)).to(dev)  # [H, nb, nb]
    tri = torch.ones(nb, nb, dtype=torch.bool, device=dev).tril()
    complete = (mt | ~tri).all(dim=-1)  # [H, nb]
    qs = q.float().transpose(0, 1)  # [H, N, D]
    ks = k.float().transpose(0, 1).repeat_interleave(rep, dim=0)  # [H, N, D]
    rows = max(b, (RECALL_LOGITS // max(1, heads * n)) // b * b)
    sums = torch.zeros(heads, dtype=torch.float64, device=dev)
    counts = torch.zeros(heads, dtype=torch.float64, device=dev)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        logits = torch.matmul(qs[:, r0:r1], ks[:, :r1].transpose(1, 2)) * scale  # [H, c, r1]
        t = torch.arange(r0, r1, device=dev)
        u = torch.arange(r1, device=dev)
        logits.masked_fill_(~(u[None, :] <= t[:, None]), float("-inf"))
        lse_dense = torch.logsumexp(logits, dim=-1)
        bm = mt[:, r0 // b:(r1 - 1) // b + 1]
        sel = bm.repeat_interleave(b, dim=1)[:, :r1 - r0].repeat_interleave(b, dim=2)[:, :, :r1]
        logits.masked_fill_(~sel, float("-inf"))
        rec = torch.exp(torch.logsumexp(logits, dim=-1) - lse_dense)  # [H, c]
        incomplete = ~complete[:, t // b]
        sums += (rec.double() * incomplete).sum(dim=-1)
        counts += incomplete.sum(dim=-1)
        del logits
    return sums.cpu().numpy(), counts.cpu().numpy()


def _recall_accumulate(layer, q, k, cu, masks, block_size, scale):
    acc = _STATE.recall
    for i, (s0, s1) in enumerate(zip(cu[:-1], cu[1:])):
        sums, counts = recall_rows(q[s0:s1], k[s0:s1], masks[i], block_size, scale)
        for h in range(len(sums)):
            cell = acc.setdefault((layer, h), [0.0, 0.0])
            cell[0] += float(sums[h])
            cell[1] += float(counts[h])


def recall_summary(acc):
    """(mean recall over incomplete rows, smallest per-(layer, head) mean); 1.0 when every row
    was complete, None when nothing was measured."""
    if not acc:
        return None, None
    total = sum(v[0] for v in acc.values())
    rows = sum(v[1] for v in acc.values())
    if rows == 0:
        return 1.0, 1.0
    per_head = [v[0] / v[1] for v in acc.values() if v[1] > 0]
    return total / rows, min(per_head)


# --- the model ------------------------------------------------------------------------------------

DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
          "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}


class Runner:
    """A causal LM with the evaluator's attention function, and the batched decoding loop."""

    def __init__(self, model_path, tokenizer, device="cuda", dtype="bf16", batch_tokens=131072):
        from transformers import AutoModelForCausalLM
        self.device = torch.device(device)
        self.dtype = DTYPES[dtype]
        register()
        try:
            model = AutoModelForCausalLM.from_pretrained(model_path, dtype=self.dtype,
                                                         attn_implementation="sdpa")
        except TypeError:
            model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=self.dtype,
                                                         attn_implementation="sdpa")
        self.model = model.to(self.device).eval()
        hf.set_attention(self.model, NAME)
        self.tok = tokenizer
        self.batch_tokens = int(batch_tokens)
        cfg = self.model.config
        text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        self.num_heads = int(text_cfg.num_attention_heads)
        self.num_kv_heads = int(getattr(text_cfg, "num_key_value_heads", None) or self.num_heads)
        # limits the command line checks prompts against (None when the config doesn't say)
        self.max_positions = getattr(text_cfg, "max_position_embeddings", None)
        self.vocab_size = getattr(text_cfg, "vocab_size", None)
        eos = set()
        for source in (tokenizer.eos_id, getattr(cfg, "eos_token_id", None),
                       getattr(getattr(self.model, "generation_config", None), "eos_token_id",
                               None)):
            if source is None:
                continue
            eos.update(int(x) for x in (source if isinstance(source, (list, tuple)) else [source]))
        if not eos:
            raise ValueError("the tokenizer and the model name no EOS token")
        self.eos_ids = sorted(eos)
        pad = getattr(getattr(tokenizer, "tok", None), "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else self.eos_ids[0]
        params = inspect.signature(self.model.forward).parameters
        self.last_only = {"logits_to_keep": 1} if "logits_to_keep" in params else (
            {"num_logits_to_keep": 1} if "num_logits_to_keep" in params else {})
        self.attn_configs = [self.model.config]
        for mod in self.model.modules():
            c = getattr(mod, "config", None)
            if c is not None and hasattr(mod, "layer_idx") and \
                    all(c is not x for x in self.attn_configs):
                self.attn_configs.append(c)

    # -- methods --
    def configure(self, kind, knobs):
        """Switch the attention to a method: kind dense / proxyattn / topk (knobs["config"], the
        Config fields) / sink_local (knobs window, sink, block_size)."""
        st = _STATE
        st.plan_cache = None
        st.batch_density = None
        if kind == "dense":
            st.mode = "dense"
        elif kind in ("proxyattn", "topk"):
            st.mode = "proxyattn"
            for c in self.attn_configs:
                c.proxyattn = dict(knobs["config"])  # a new dict: proxyattn.hf re-resolves
            hf.clear_cache()
        elif kind == "sink_local":
            st.mode = "mask"
            st.mask = {"window": float(knobs["window"]), "sink": int(knobs["sink"]),
                       "block_size": int(knobs["block_size"])}
        else:
            raise ValueError(kind)

    def batches(self, lengths):
        """Index batches, longest prompts first, each holding at most batch_tokens padded tokens."""
        order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        out, i = [], 0
        while i < len(order):
            size = max(1, self.batch_tokens // lengths[order[i]])
            out.append(order[i:i + size])
            i += size
        return out

    def _inputs(self, rows):
        batch, longest = len(rows), max(len(r) for r in rows)
        ids = torch.full((batch, longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((batch, longest), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, longest - len(r):] = torch.as_tensor(r, dtype=torch.long)
            mask[i, longest - len(r):] = 1
        padded = any(len(r) != longest for r in rows)
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp_(min=0)
        return ids, mask, padded, pos

    def _prefill(self, rows, use_cache):
        """The prefill forward -> (outputs, mask, padded, positions, per-row density). The model
        gets no attention mask (the attention function reads the valid tokens from the state)."""
        ids, mask, padded, pos = self._inputs(rows)
        st = _STATE
        st.plan_cache = None
        st.valid = mask.bool() if padded else None
        dens = None
        try:
            if st.mode == "proxyattn":
                with hf.record_density() as rec:
                    out = self.model(input_ids=ids, position_ids=pos, use_cache=use_cache,
                                     **self.last_only)
                dens = _row_density(rec.calls, len(rows))
            else:
                out = self.model(input_ids=ids, position_ids=pos, use_cache=use_cache,
                                 **self.last_only)
                if st.mode == "mask":
                    dens = list(st.batch_density)
        finally:
            st.valid = None
            st.plan_cache = None
        if dens is None:
            dens = [1.0] * len(rows)
        return out, mask, padded, pos, dens

    @torch.no_grad()
    def generate(self, rows, max_new):
        """Greedy continuations (token ids before the first EOS) of a batch of prompts, and each
        prompt's density."""
        out, mask, padded, pos, dens = self._prefill(rows, True)
        cache = out.past_key_values
        eos = torch.tensor(self.eos_ids, device=self.device)
        nxt = out.logits[:, -1].argmax(-1)
        del out
        done = torch.isin(nxt, eos)
        toks = [nxt]
        last = pos[:, -1].clone()
        batch = len(rows)
        for _ in range(max_new - 1):
            if bool(done.all()):
                break
            last += 1
            if padded:
                mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
            out = self.model(input_ids=nxt[:, None], attention_mask=mask if padded else None,
                             position_ids=last[:, None], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            nxt = torch.where(done, eos[0], out.logits[:, -1].argmax(-1))
            del out
            toks.append(nxt)
            done |= torch.isin(nxt, eos)
        del cache
        gen = torch.stack(toks, dim=1).tolist()
        stop = set(self.eos_ids)
        res = []
        for row in gen:
            cut = next((j for j, t in enumerate(row) if t in stop), len(row))
            res.append(row[:cut])
        return res, dens

    @torch.no_grad()
    def densities(self, rows):
        """Per-prompt density of a prefill (no decoding)."""
        dens = []
        for idx in self.batches([len(r) for r in rows]):
            sub = [rows[i] for i in idx]
            d = self._prefill(sub, False)[4]
            dens.extend(zip(idx, d))
        return [d for _, d in sorted(dens)]

    @torch.no_grad()
    def recall(self, rows):
        """(mean recall, minimum-head recall) of the current method over these prompts."""
        st = _STATE
        if st.mode == "dense" or not rows:
            return None, None
        st.recall = {}
        try:
            for idx in self.batches([len(r) for r in rows]):
                self._prefill([rows[i] for i in idx], False)
            return recall_summary(st.recall)
        finally:
            st.recall = None


def _row_density(calls, batch):
    """Per-sequence density: the mean over recorded layers of the mean over heads."""
    if not calls:
        return [1.0] * batch
    acc = np.zeros(batch, dtype=np.float64)
    for call in calls:
        d = np.asarray(call["density"], dtype=np.float64).reshape(batch, -1)
        acc += d.mean(axis=1)
    return (acc / len(calls)).tolist()


def environment(device):
    """Versions and the GPU name for the run's metadata."""
    import transformers

    import proxyattn
    dev = torch.device(device)
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" and torch.cuda.is_available() \
        else None
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "proxyattn": getattr(proxyattn, "__version__", None), "gpu": gpu}
