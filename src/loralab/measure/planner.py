"""What a fine-tune keeps in memory: weights, gradients, optimizer state and activations.

The arithmetic behind `python -m loralab.memory` (the CLI, tables and plot live in
loralab/memory.py). Everything is counted in bytes from a model's shape, for full
fine-tuning (every weight trains) and for each LoRA variant that declares its `MemoryTerms`
in the variant registry (`loralab.lora.variants`); the planner names none of them:

- `lora`: the base is frozen in `dtype`, rank-r adapters train on the target linear layers;
- `qlora`: as LoRA, with the frozen linear weights stored in 4 bits (NF4, blocks of 64 with
  double-quantised scales, `stored_weight_bytes`) and dequantised on the fly;
- `lora_fa`: as LoRA, with A frozen at its init (`trains_a=False`): only B trains, and an
  adapted layer keeps no input for A's gradient.

Trained tensors follow the usual mixed-precision recipe: the weight and its gradient in
`dtype`, Adam's two moments in fp32, and in half precision an fp32 master copy as well, so
16 bytes per trained parameter whatever the dtype (the "7B needs 112 GB" rule).
Activations are the tensors autograd saves for backward with dropout off, counted per
operation of a transformer block (see `layer_activations`); a frozen linear layer saves no
input, which is where LoRA also saves activation memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from loralab.errors import ConfigError
from loralab.lora.variants import MemoryTerms, memory_terms, planned_methods
from loralab.lora.variants.qlora import NF4_BYTES  # noqa: F401 - where callers found it
from loralab.models.projections import canonical_projection, known_aliases

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
ADAM_BYTES = 8  # two fp32 moments per trained parameter
MASTER_BYTES = 4  # fp32 master copy of a trained parameter held in half precision


@dataclass(frozen=True)
class ModelShape:
    """A transformer's dimensions: enough to count its parameters and activations."""

    name: str
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    kv_heads: int | None = None  # grouped-query attention (Llama 2 70B: 8)
    gated_mlp: bool = False  # SwiGLU: gate, up and down projections
    bias: bool = True
    rms_norm: bool = False
    max_positions: int = 0  # learned position embeddings (0: rotary)
    type_vocab: int = 0  # BERT's token-type embeddings
    embedding_norm: bool = False  # BERT normalises the embeddings
    final_norm: bool = True  # pre-LN models normalise before the head
    pooler: bool = False  # BERT's dense + tanh over the first token
    head: str = "classifier"  # "classifier" (num_classes outputs) or "lm" (vocab outputs)
    num_classes: int = 2
    tied_embeddings: bool = False
    padding_mask: bool = True  # encoders materialise a [b, 1, s, s] attention mask
    fused_qkv: bool = False  # one layer computes q, k and v (GPT-2's c_attn)
    # t x ffn tensors the MLP's activation keeps for backward: 1 for a fused GELU, 4 for the
    # tanh GELU GPT-2 writes out in Python (gelu_new: its input, tanh, x/2 and 1 + tanh)
    activation_saves: int = 1

    @property
    def kv_dim(self) -> int:
        return self.hidden * (self.kv_heads or self.heads) // self.heads

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one block, by canonical name."""
        h, f = self.hidden, self.ffn
        shapes = {"q": (h, h), "k": (h, self.kv_dim), "v": (h, self.kv_dim), "o": (h, h)}
        if self.fused_qkv:
            shapes = {"qkv": (h, h + 2 * self.kv_dim), "o": (h, h)}
        if self.gated_mlp:
            shapes["gate"] = (h, f)
        return {**shapes, "up": (h, f), "down": (f, h)}

    def norm_params(self) -> int:
        return self.hidden * (1 if self.rms_norm else 2)

    def linear_params(self) -> int:
        """Weights (and biases) of all blocks' linear layers: what QLoRA quantises."""
        per_block = sum(i * o + (o if self.bias else 0) for i, o in self.linears().values())
        return self.layers * per_block

    def params(self) -> int:
        h = self.hidden
        embeddings = (self.vocab_size + self.max_positions + self.type_vocab) * h
        other = self.layers * 2 * self.norm_params()
        other += self.norm_params() * (int(self.embedding_norm) + int(self.final_norm))
        other += (h * h + h) if self.pooler else 0
        return embeddings + self.linear_params() + other + self.head_params()

    def head_params(self) -> int:
        if self.head == "lm":
            return 0 if self.tied_embeddings else self.vocab_size * self.hidden
        return self.hidden * self.num_classes + self.num_classes


@dataclass(frozen=True)
class Method:
    """How the model is adapted: full or a planned variant (lora, qlora, ...), with its rank
    and target linear layers."""

    name: str
    rank: int = 8
    targets: tuple[str, ...] = ("q", "v")
    train_head: bool = True  # a new classifier head trains in full under LoRA too

    @property
    def terms(self) -> MemoryTerms:
        """What this method changes in memory, as the variant registry declares it."""
        try:
            return memory_terms(self.name)
        except KeyError:
            methods = planned_methods()
            raise ConfigError(
                f"--methods: unknown method {self.name!r}; use {', '.join(methods[:-1])} "
                f"or {methods[-1]}."
            ) from None

    def target_set(self, shape: ModelShape) -> set[str]:
        """Canonical names of the adapted linears (all of them for full fine-tuning)."""
        names = set(shape.linears())
        if self.terms.base_trains or "all-linear" in self.targets:
            return names
        wanted = {canonical_target(t) for t in self.targets}
        if shape.fused_qkv:  # q, k or v of GPT-2 can only be adapted as its c_attn
            wanted = {"qkv" if t in ("q", "k", "v") else t for t in wanted}
        return wanted & names


def canonical_target(name: str) -> str:
    """q_proj / query / q -> q, fc1 / up_proj -> up, c_attn -> qkv, ...; unknown names refused."""
    canonical = canonical_projection(name)
    if canonical is None:
        raise ConfigError(
            f"--targets: {name!r} is not a linear layer the planner knows; use names among "
            f"{known_aliases()} or all-linear."
        )
    return canonical


@dataclass(frozen=True)
class Workload:
    batch: int = 1
    seq_len: int = 512
    dtype: str = "bf16"
    attention: str = "fused"  # fused (SDPA/flash: saves q, k, v, out) | eager (saves probs)


@dataclass(frozen=True)
class MemoryEstimate:
    weights: float
    gradients: float
    optimizer: float
    activations: float
    trainable_params: int = 0

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations

    @property
    def static(self) -> float:
        """Everything but activations: what stays whatever the batch."""
        return self.weights + self.gradients + self.optimizer


def lora_params(shape: ModelShape, method: Method) -> int:
    """r * (in + out) per adapted linear layer, in every block, plus what the variant adds."""
    linears = shape.linears()
    adapted = method.target_set(shape)
    extra = method.terms.extra_params_per_layer * len(adapted)
    return shape.layers * (sum(method.rank * sum(linears[n]) for n in adapted) + extra)


def frozen_adapter_params(shape: ModelShape, method: Method) -> int:
    """The adapter's numbers that do not train: A (r * in per adapted layer) where it is frozen."""
    if method.terms.trains_a:
        return 0
    linears = shape.linears()
    return shape.layers * sum(method.rank * linears[n][0] for n in method.target_set(shape))


def trainable_params(shape: ModelShape, method: Method) -> int:
    if method.terms.base_trains:
        return shape.params()
    trained = lora_params(shape, method) - frozen_adapter_params(shape, method)
    return trained + (shape.head_params() if method.train_head else 0)


def estimate(shape: ModelShape, workload: Workload, method: Method) -> MemoryEstimate:
    """Bytes of weights, gradients, optimizer state and activations of one training step."""
    terms = method.terms  # refuses a method the registry has no terms for
    elem = DTYPE_BYTES[workload.dtype]
    trained = trainable_params(shape, method)
    master = 0 if workload.dtype == "fp32" else MASTER_BYTES
    if terms.base_trains:
        frozen_bytes = 0.0
    else:
        frozen = shape.params() - (shape.head_params() if method.train_head else 0)
        frozen += frozen_adapter_params(shape, method)
        frozen_bytes = float(frozen * elem)
        if terms.stored_weight_bytes is not None:
            linear = shape.linear_params()
            frozen_bytes += linear * (terms.stored_weight_bytes - elem)
            frozen_bytes += stored_head_bytes(shape, method, elem)
    return MemoryEstimate(
        weights=frozen_bytes + trained * elem,
        gradients=float(trained * elem),
        optimizer=float(trained * (ADAM_BYTES + master)),
        activations=activation_bytes(shape, workload, method),
        trainable_params=trained,
    )


def stored_head_bytes(shape: ModelShape, method: Method, elem: int) -> float:
    """A frozen LM head is stored like the frozen linears (QLoRA: quantized); a tied one is
    stored again, as codes beside the float embedding it shares its weight with."""
    stored = method.terms.stored_weight_bytes
    if shape.head != "lm" or method.train_head or stored is None:
        return 0.0
    head = shape.vocab_size * shape.hidden
    return head * stored if shape.tied_embeddings else head * (stored - elem)


def activation_bytes(shape: ModelShape, workload: Workload, method: Method) -> float:
    """Tensors saved for backward by the embeddings, every block and the head."""
    b, s = workload.batch, workload.seq_len
    tokens, elem = b * s, DTYPE_BYTES[workload.dtype]
    full = method.terms.base_trains
    adapted = method.target_set(shape)
    total = 0.0
    if full:  # the embedding's backward keeps the token ids
        total += tokens * 8 + (s * 8 if shape.max_positions else 0)
        total += norm_saved(shape, tokens, elem, full) if shape.embedding_norm else 0.0
    needs_grad = full  # does the residual stream entering a block require grad?
    for _ in range(shape.layers):
        saved, needs_grad = layer_activations(shape, workload, adapted, full, method, needs_grad)
        total += saved
    if needs_grad and shape.final_norm:
        total += norm_saved(shape, tokens, elem, full)
    dequantized = method.terms.stored_weight_bytes is not None
    if dequantized and shape.head == "lm" and needs_grad and not method.train_head:
        total += shape.vocab_size * shape.hidden * elem  # the stored head's float copy
    return total + head_activations(shape, workload, needs_grad)


def norm_saved(shape: ModelShape, tokens: int, elem: int, trained: bool = False) -> float:
    """A LayerNorm/RMSNorm keeps its input and per-token fp32 statistics; an RMSNorm whose
    weight trains also keeps the normalised input it multiplies that weight with (Llama's
    RMSNorm scales in a separate op, where a LayerNorm kernel scales inside)."""
    kept = tokens * shape.hidden * elem + tokens * 4 * (1 if shape.rms_norm else 2)
    return kept + (tokens * shape.hidden * elem if shape.rms_norm and trained else 0)


def layer_activations(
    shape: ModelShape,
    workload: Workload,
    adapted: set[str],
    full: bool,
    method: Method,
    needs_grad: bool,
) -> tuple[float, bool]:
    """Saved bytes of one block, and whether its output requires grad.

    An op saves what its backward needs: a linear layer keeps its input only when its
    weight (or its LoRA A) trains; a norm, activation or attention kernel keeps its inputs
    only when a gradient must flow through it. A frozen linear layer stored compressed
    (QLoRA) whose input needs a gradient keeps the float weight it dequantized for its
    matmul (`grad_in`).
    """
    b, s, h, f = workload.batch, workload.seq_len, shape.hidden, shape.ffn
    t, elem = b * s, DTYPE_BYTES[workload.dtype]
    lora_out = 0 if full else t * method.rank * elem  # lora_B keeps A's output
    # an adapted layer keeps its input for its weight's or A's gradient (not LoRA-FA's)
    keeps_input = full or method.terms.trains_a
    saved = 0.0
    grad_in = (
        {"q", "k", "v", "qkv"} if needs_grad else set()
    )  # linears whose input needs a gradient
    # attention: norm -> q, k, v -> attention kernel -> o
    saved += norm_saved(shape, t, elem, full) if needs_grad else 0.0
    qkv_trained = adapted & {"q", "k", "v", "qkv"}
    saved += t * h * elem if qkv_trained and keeps_input else 0.0  # the normed input, once
    saved += lora_out * len(qkv_trained)
    attention_kept = needs_grad or bool(qkv_trained)
    if attention_kept:
        saved += attention_saved(shape, workload)
        needs_grad = True
        grad_in.add("o")
    if "o" in adapted:
        # a fused kernel's output, heads merged back, is already o's input: kept once
        shared = attention_kept and workload.attention == "fused"
        saved += (0 if shared or not keeps_input else t * h * elem) + lora_out
        needs_grad = True
    # MLP: norm -> up (and gate) -> activation -> down
    saved += norm_saved(shape, t, elem, full) if needs_grad else 0.0
    grad_in |= {"up", "gate"} if needs_grad else set()
    in_trained = adapted & {"up", "gate"}
    saved += t * h * elem if in_trained and keeps_input else 0.0
    saved += lora_out * len(in_trained)
    if needs_grad or in_trained:
        # GELU keeps its input; SwiGLU keeps gate, silu(gate) and up for the product
        saved += t * f * elem * (3 if shape.gated_mlp else shape.activation_saves)
        needs_grad = True
        grad_in.add("down")
    if "down" in adapted:
        saved += (t * f * elem if keeps_input else 0) + lora_out
        needs_grad = True
    if method.terms.stored_weight_bytes is not None:
        linears = shape.linears()
        saved += sum(i * o for name, (i, o) in linears.items() if name in grad_in) * elem
    return saved, needs_grad


def attention_saved(shape: ModelShape, workload: Workload) -> float:
    """What scaled-dot-product attention keeps for backward."""
    b, s, elem = workload.batch, workload.seq_len, DTYPE_BYTES[workload.dtype]
    t, h, kv, heads = b * s, shape.hidden, shape.kv_dim, shape.heads
    mask = b * s * s * elem if shape.padding_mask else 0
    if workload.attention == "eager":  # q, k, the softmax probabilities, v
        return t * (h + 2 * kv) * elem + b * heads * s * s * elem + mask
    # fused kernels keep q, k, v, the output and a per-row log-sum-exp
    return t * (2 * h + 2 * kv) * elem + b * heads * s * 4 + mask


def head_activations(shape: ModelShape, workload: Workload, needs_grad: bool) -> float:
    """The head's saved tensors: pooled features (classifier) or the logits' softmax (LM)."""
    b, s, elem = workload.batch, workload.seq_len, DTYPE_BYTES[workload.dtype]
    if shape.head == "lm":
        # cross-entropy keeps fp32 log-probabilities over the vocabulary; the head its input
        return b * s * shape.vocab_size * 4 + (b * s * shape.hidden * elem if needs_grad else 0)
    return b * shape.hidden * elem + b * s * elem  # pooled features, the pooling mask
