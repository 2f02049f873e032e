"""The torch/transformers side of the evaluator: loading a causal LM, one attention function that
serves every method, batched greedy decoding, density recording and recall.

The attention function (registered as "proxyattn_eval") runs, on prefill (q_len == kv_len > 1):
  dense      SDPA;
  proxyattn  proxyattn.hf's ProxyAttn with the model config's `proxyattn` entry (top-k too);
  mask       a plan built by proxyattn.Plan.from_block_mask from the method's block mask, run by
             proxyattn.attend (sink + local window);
and SDPA on decode steps, as proxyattn.hf does. Padded batches (left padding here) are unpadded to
packed sequences with cu_seqlens.
"""
import inspect
import math

import numpy as np
import torch

from .. import hf
from . import methods as M

NAME = "proxyattn_eval"
RECALL_LOGITS = 1 << 27  # logits held at once by the recall computation (fp32 entries)


class _State:
    def __init__(self):
        self.mode = "dense"
        self.mask = None  # sink_local knobs: {"window", "sink", "block_size"}
        self.plan_cache = None  # (key, plan, masks, densities) of the current batch
        self.batch_density = None  # per-sequence density of the last masked prefill
        self.recall = None  # {(layer, head): [sum, rows]} while measuring recall


_STATE = _State()


def register():
    """Adds "proxyattn_eval" to transformers' attention and mask interfaces (and proxyattn.hf's
    "proxyattn", whose SDPA fallback this uses)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    hf.register("proxyattn")
    AttentionInterface.register(NAME, _forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def _forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
             **kwargs):
    """transformers' attention signature: query [B, H, S, D], key/value [B, Hkv, S_kv, D]
    -> (out [B, S, H, D], None)."""
    st = _STATE
    q_len, kv_len = query.shape[2], key.shape[2]
    if q_len == 1 or q_len != kv_len or st.mode == "dense":
        return hf._sdpa(module, query, key, value, attention_mask, dropout=dropout,
                        scaling=scaling, is_causal=is_causal, **kwargs)
    if st.mode == "proxyattn":
        if st.recall is not None:
            _recall_proxyattn(module, query, key, attention_mask, scaling)
        return hf.attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                    scaling=scaling, is_causal=is_causal, _name="proxyattn",
                                    **kwargs)
    return _mask_forward(module, query, key, value, attention_mask, scaling)


def _pack(query, key, value, attention_mask):
    """Packed q [T, H, D], k, v [T, Hkv, D] of the valid tokens, cu_seqlens (list) and the index of
    the valid tokens in the padded layout (None when nothing is padded)."""
    batch, heads, seq, dim = query.shape
    kv_heads = key.shape[1]
    q = query.transpose(1, 2).reshape(batch * seq, heads, dim)
    k = key.transpose(1, 2).reshape(batch * seq, kv_heads, dim)
    v = None if value is None else value.transpose(1, 2).reshape(batch * seq, kv_heads, dim)
    valid = None
    if attention_mask is not None:
        valid = hf._padding_layout(attention_mask, batch, seq)
        if valid is None:
            raise RuntimeError("proxyattn.eval: an attention mask other than causal padding")
    if valid is None or bool(valid.all()):
        return q.contiguous(), k.contiguous(), None if v is None else v.contiguous(), \
            [i * seq for i in range(batch + 1)], None
    index = valid.reshape(-1).nonzero().squeeze(1)
    lengths = valid.sum(dim=1).tolist()
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + int(n))
    pick = (lambda t: None if t is None else t.index_select(0, index).contiguous())
    return pick(q), pick(k), pick(v), cu, index


def _mask_forward(module, query, key, value, attention_mask, scaling):
    import proxyattn
    st = _STATE
    batch, heads, seq, dim = query.shape
    q, k, v, cu, index = _pack(query, key, value, attention_mask)
    b = int(st.mask["block_size"])
    cache_key = (tuple(cu), heads, k.shape[1], dim, str(q.dtype), str(q.device), scaling)
    if st.plan_cache is None or st.plan_cache[0] != cache_key:
        masks, dens = [], []
        for s0, s1 in zip(cu[:-1], cu[1:]):
            nb = M.num_blocks(s1 - s0, b)
            mask = M.sink_local_mask(nb, st.mask["window"], st.mask["sink"], heads)
            masks.append(np.ascontiguousarray(mask))
            dens.append(float(mask[0].sum() / M.causal_blocks(nb)))
        plan = proxyattn.Plan.from_block_mask(masks, q, k, cu_seqlens=cu, block_size=b,
                                              scale=scaling)
        st.plan_cache = (cache_key, plan, masks, dens)
        st.batch_density = dens
    _, plan, masks, _ = st.plan_cache
    if st.recall is not None:
        _recall_accumulate(getattr(module, "layer_idx", None), q, k, cu, masks, b, scaling)
    out = proxyattn.attend(q, k, v, plan)
    if index is None:
        return out.view(batch, seq, heads, dim), None
    full = q.new_zeros(batch * seq, heads, dim)
    full.index_copy_(0, index, out)
    return full.view(batch, seq, heads, dim), None


def _recall_proxyattn(module, query, key, attention_mask, scaling):
    import proxyattn
    heads, kv_heads = query.shape[1], key.shape[1]
    dense, config, _ = hf._settings("proxyattn", module, heads, kv_heads)
    if dense:
        return
    q, k, _, cu, _ = _pack(query, key, None, attention_mask)
    if scaling is not None:
        config = config.replace(scale=float(scaling))
    plan = proxyattn.plan(q, k, cu, config)
    _recall_accumulate(getattr(module, "layer_idx", None), q, k, cu, plan.to_dense(),
                       config.block_size, scaling)


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
        """The prefill forward -> (outputs, mask, padded, positions, per-row density)."""
        ids, mask, padded, pos = self._inputs(rows)
        st = _STATE
        st.plan_cache = None
        dens = None
        if st.mode == "proxyattn":
            with hf.record_density() as rec:
                out = self.model(input_ids=ids, attention_mask=mask if padded else None,
                                 position_ids=pos, use_cache=use_cache, **self.last_only)
            dens = _row_density(rec.calls, len(rows))
        else:
            out = self.model(input_ids=ids, attention_mask=mask if padded else None,
                             position_ids=pos, use_cache=use_cache, **self.last_only)
            if st.mode == "mask":
                dens = list(st.batch_density)
        if dens is None:
            dens = [1.0] * len(rows)
        st.plan_cache = None
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
