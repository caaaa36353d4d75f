"""A model's plan: its nodes in order, a context for each, and the passes
over them, forward and backward, worked out once.

Forward, the nodes run in order (creation order: every node after its
inputs). Backward, they run in reverse, and each node's input gradients are
handed to the tensors they belong to; where a tensor feeds several nodes
its gradients are added in a fixed order (the order the backward pass meets
them), so the same seed gives the same bits on each device.

Fusion, where the graph allows it:

* a layer that ``fuses_activation`` (Dense) and the activation layer that
  is the only consumer of its output (and the output is not a model
  output) are one product, the activation in its epilogue: one of the
  epilogue's kinds (``ActivationFunction.in_epilogue``: not Softmax) and,
  in training, one whose gradient comes from its output
  (``ActivationFunction.from_output``: not GELU or SiLU, whose input the
  backward needs);
* on the way back, such an activation (in the epilogue's kinds, its
  gradient from its output) whose only consumer is a layer that
  ``folds_activation_grad`` (a Dense, with an activation= of its own or
  not) is skipped, its gradient folded into that Dense's dY·Wᵀ product;
* a Softmax or Sigmoid that makes a model output read by nothing else is
  skipped in training when its loss takes its input instead (the loss's
  fused kind: the loss and the layer in one kernel).

A path of layers plans to the same operations as the chains of earlier
versions: the same dispatches a step, and the same bits.
"""

from __future__ import annotations

from typing import NamedTuple

from .backends import Array, Backend
from .graph import Node, Symbol, graph_nodes
from .layers import Activation, ActivationFunction, Context, Layer
from .layers.base import Workspace
from .store import packed_arrays


def _epilogue_activation(layer: Layer, training: bool) -> bool:
    """An activation a product's epilogue computes: in training, only one
    whose backward needs its output alone (the product keeps no input)."""
    if not isinstance(layer, Activation):
        return False
    function = layer.function
    return function.in_epilogue and (function.from_output or not training)


def _foldable_activation(layer: Layer) -> bool:
    """An activation whose gradient a product's epilogue computes from its output."""
    return isinstance(layer, Activation) and layer.function.in_epilogue and layer.function.from_output


def _trains(layer: Layer) -> bool:
    return any(p.trainable for p in layer.params.values())


class Back(NamedTuple):
    """One node's part of a backward pass: ``fold``, an activation node
    whose gradient this node's product computes (its input then takes the
    result), which inputs need a gradient, and whether the layer's
    parameter gradients add to those of its calls met before (a shared
    layer's: the first call met writes them, the others add)."""

    node: int
    fold: int | None
    needed: list[bool]
    adds: bool


class BackStep(NamedTuple):
    """A :class:`Back` with what it needs at hand: the layer and its
    context, the ``id`` of the tensor whose gradient it takes, its input
    tensors, and for a fold the activation's function, context and input."""

    back: Back
    layer: Layer
    ctx: Context
    output: int
    inputs: list[Symbol]
    needed: list[bool]
    #: the layer's input gradients: 0 none, 1 that of its one input, 2 one per input (backward_inputs)
    inputs_kind: int
    fold_function: ActivationFunction | None
    fold_ctx: Context | None
    fold_input: Symbol | None


class Step(NamedTuple):
    """A node's forward pass with what it needs at hand: the layer and its
    context, the tensors (by ``id`` of their symbols) it reads and writes,
    and the activation its product computes (with that node's context and
    output) or None."""

    layer: Layer
    ctx: Context
    inputs: tuple[int, ...]
    output: int
    activation: Layer | None
    activation_ctx: Context | None


class Pass(NamedTuple):
    """The work of a forward (and, in training, backward) pass.

    ``forward``: (node, the activation node its epilogue computes or None)
    in order, and ``steps`` the same ready to run; ``reads``: per model
    output, the tensor its loss or predict reads (a loss fused with the
    output's layer reads that layer's input); ``backward``: the nodes in
    reverse order, for training."""

    forward: list[tuple[int, int | None]]
    steps: list[Step]
    reads: list[Symbol]
    backward: list[Back]
    back_steps: list[BackStep]
    #: ids of the tensors that receive more than one gradient (their sum)
    summed: frozenset[int]
    #: ``id`` of each tensor in ``reads``
    read_ids: list[int]


class Plan:
    """The nodes that ``outputs`` depend on (from ``inputs``), ordered, with
    a :class:`Context` for each: the buffers of a node belong to the plan, so
    a layer called at two nodes (shared weights) keeps both calls' work.

    ``layers``: each layer once, in the order of its first node.
    ``buffers``: the model's own buffers (its batches, loss gradients,
    gradient sums), reused from step to step.
    """

    def __init__(self, backend: Backend, inputs: list[Symbol], outputs: list[Symbol]):
        self.backend, self.inputs, self.outputs = backend, inputs, outputs
        self.nodes: list[Node] = graph_nodes(inputs, outputs)
        self.layers: list[Layer] = list({id(n.layer): n.layer for n in self.nodes}.values())
        calls: dict[int, int] = {}
        self.contexts: list[Context] = []
        for node in self.nodes:
            call = calls[id(node.layer)] = calls.get(id(node.layer), -1) + 1
            self.contexts.append(Context(backend, call))
        self.position = {id(node): i for i, node in enumerate(self.nodes)}
        self.input_ids = [id(s) for s in inputs]
        self.consumers: dict[int, list[int]] = {id(s): [] for s in inputs}
        for i, node in enumerate(self.nodes):
            self.consumers[id(node.output)] = []
            for s in node.inputs:
                if i not in self.consumers[id(s)]:
                    self.consumers[id(s)].append(i)
        self.buffers = Workspace(backend)
        self._scratch: dict[int, list[Array]] = {}  # a shared layer's later calls' parameter gradients
        self._passes: dict[tuple, Pass] = {}
        self.stepped: list[tuple[int, tuple[str, ...]]] = []  # nodes with step values, and their names
        self.replayable = all(layer.replayable for layer in self.layers)

    def built(self) -> None:
        """The layers hold their parameters now: find the nodes that draw
        step values, and forget passes that depended on what trains."""
        self.stepped = [(i, tuple(node.layer.step_values(0, self.contexts[i].call)))
                        for i, node in enumerate(self.nodes)]
        self.stepped = [(i, names) for i, names in self.stepped if names]
        self._passes.clear()
        self._scratch.clear()

    # ------------------------------------------------------------------ passes
    def fusible_output(self, k: int) -> Node | None:
        """The node making output ``k`` when a loss may skip it in training
        (nothing else reads the output), else None."""
        symbol = self.outputs[k]
        if symbol.node is None or self.consumers[id(symbol)] or \
                sum(s is symbol for s in self.outputs) > 1:
            return None
        return symbol.node

    def pass_for(self, training: bool, fused: tuple[bool | None, ...] = ()) -> Pass:
        """The pass in inference, or in training with, per output, ``fused``
        True where a loss skips the output's layer, False where a loss reads
        the output, None where no loss does (no gradient starts there)."""
        key = (training, fused)
        found = self._passes.get(key)
        if found is None:
            found = self._passes[key] = self._make_pass(training, fused)
        return found

    def _make_pass(self, training: bool, fused: tuple[bool | None, ...]) -> Pass:
        nodes = self.nodes
        fused = fused + (False,) * (len(self.outputs) - len(fused))
        skipped = {self.position[id(self.outputs[k].node)] for k, f in enumerate(fused) if f}
        outputs = {id(s) for s in self.outputs}
        absorbed: dict[int, int] = {}  # activation node -> the product computing it
        for i, node in enumerate(nodes):
            users = self.consumers[id(node.output)]
            if i in skipped or not node.layer.fuses_activation or len(users) != 1 or id(node.output) in outputs:
                continue
            j = users[0]
            if j not in skipped and _epilogue_activation(nodes[j].layer, training):
                absorbed[j] = i
        products = {i: j for j, i in absorbed.items()}
        forward = [(i, products.get(i)) for i in range(len(nodes)) if i not in skipped and i not in absorbed]
        reads = [nodes[self.position[id(s.node)]].inputs[0] if f else s for s, f in zip(self.outputs, fused)]
        graded = [s for s, f in zip(reads, fused) if f is not None]
        backward = self._backward(graded, skipped) if training else []
        return Pass(forward, [self._step(i, j) for i, j in forward], reads, backward,
                    [self._back_step(entry) for entry in backward], self._summed(graded, backward),
                    [id(s) for s in reads])

    def _summed(self, graded_reads: list[Symbol], backward: list[Back]) -> frozenset[int]:
        """The tensors that more than one gradient reaches in a backward pass."""
        counts: dict[int, int] = {}
        targets = [id(s) for s in graded_reads]
        for entry in backward:
            node = self.nodes[entry.node]
            if entry.fold is not None:
                targets.append(id(self.nodes[entry.fold].inputs[0]))
            else:
                targets += [id(s) for s, need in zip(node.inputs, entry.needed) if need]
        for key in targets:
            counts[key] = counts.get(key, 0) + 1
        return frozenset(key for key, count in counts.items() if count > 1)

    def _back_step(self, entry: Back) -> BackStep:
        node = self.nodes[entry.node]
        kind = 2 if node.layer.n_inputs != 1 else int(entry.needed[0])
        common = (entry, node.layer, self.contexts[entry.node], id(node.output), node.inputs, entry.needed, kind)
        if entry.fold is None:
            return BackStep(*common, None, None, None)
        activation = self.nodes[entry.fold]
        return BackStep(*common, activation.layer.function, self.contexts[entry.fold], activation.inputs[0])

    def untouched(self, p: Pass) -> list:
        """The trainable parameters ``p``'s backward pass never reaches (layers
        that only feed outputs without a loss): their gradients must be zero."""
        reached = {id(self.nodes[entry.node].layer) for entry in p.backward}
        return [q for layer in self.layers if id(layer) not in reached for q in layer.parameters]

    def _step(self, i: int, j: int | None) -> Step:
        node = self.nodes[i]
        inputs = tuple(id(s) for s in node.inputs)
        if j is None:
            return Step(node.layer, self.contexts[i], inputs, id(node.output), None, None)
        return Step(node.layer, self.contexts[i], inputs, id(self.nodes[j].output), self.nodes[j].layer,
                    self.contexts[j])

    def _backward(self, graded_reads: list[Symbol], skipped: set[int]) -> list[Back]:
        nodes = self.nodes
        upstream = {id(s): False for s in self.inputs}  # a trainable parameter at or before the tensor
        for node in nodes:
            upstream[id(node.output)] = _trains(node.layer) or any(upstream[id(s)] for s in node.inputs)
        graded = {id(s) for s in graded_reads}  # tensors that receive a gradient
        folded: set[int] = set()
        met: set[int] = set()  # layers whose parameter gradients are written
        entries: list[Back] = []
        for i in range(len(nodes) - 1, -1, -1):
            node = nodes[i]
            if i in skipped or i in folded or id(node.output) not in graded:
                continue
            needed = [upstream[id(s)] for s in node.inputs]
            if not _trains(node.layer) and not any(needed):
                continue
            fold = self._fold(node) if needed[0] else None
            if fold is not None:
                folded.add(fold)
                graded.add(id(nodes[fold].inputs[0]))
            graded.update(id(s) for s, need in zip(node.inputs, needed) if need)
            adds = _trains(node.layer) and id(node.layer) in met
            met.add(id(node.layer))
            entries.append(Back(i, fold, needed, adds))
        return entries

    def _fold(self, node: Node) -> int | None:
        """The activation node whose gradient ``node``'s product can take
        over: ``node`` folds activations' gradients and is that
        activation's only consumer, and the activation's output is no
        model output."""
        source = node.inputs[0].node
        if not node.layer.folds_activation_grad or source is None or not _foldable_activation(source.layer):
            return None
        if self.consumers[id(source.output)] != [self.position[id(node)]] or \
                any(s is source.output for s in self.outputs):
            return None
        return self.position[id(source)]

    # ------------------------------------------------------------------ running
    def forward(self, p: Pass, arrays: list[Array], training: bool) -> list[Array]:
        """The tensors ``p`` reads, from a batch of each input."""
        values: dict[int, Array] = dict(zip(self.input_ids, arrays))
        for layer, ctx, inputs, output, activation, activation_ctx in p.steps:
            ctx.training = training
            if activation is not None:
                activation_ctx.training = training
                y = layer.call(ctx, values[inputs[0]], activation=activation.function)
                values[output] = activation.take(activation_ctx, y)
            elif len(inputs) == 1:
                values[output] = layer.call(ctx, values[inputs[0]])
            else:
                values[output] = layer.call(ctx, *[values[i] for i in inputs])
        return [values[key] for key in p.read_ids]

    def backward(self, p: Pass, grads: list[Array | None]) -> None:
        """Every parameter's gradient, from the gradients of what ``p``
        reads (None for an output without a loss)."""
        sums = _Sums(self, p.summed)
        held, hand = sums.held, sums.add
        for symbol, g in zip(p.reads, grads):
            if g is not None:
                hand(symbol, g)
        for step in p.back_steps:
            back, layer, ctx, output, inputs, needed, kind, fold_function, fold_ctx, fold_input = step
            if back.adds:
                self._shared_back(step, sums)
            elif fold_function is not None:
                hand(fold_input, layer.backward(ctx, held[output], activation_grad=(fold_function, fold_ctx.y)))
            elif kind == 1:
                hand(inputs[0], layer.backward(ctx, held[output]))
            elif kind == 0:
                layer.parameter_gradients(ctx, held[output])
            else:
                for symbol, d in zip(inputs, layer.backward_inputs(ctx, held[output], needed)):
                    if d is not None:
                        hand(symbol, d)

    def _shared_back(self, step: BackStep, sums: "_Sums") -> None:
        """The backward of a shared layer met before: this call's parameter
        gradients go to buffers of its own, then add to the layer's."""
        parameters = step.layer.parameters
        grads = [q.grad for q in parameters]
        for q, scratch in zip(parameters, self._scratch_grads(step.back.node, parameters)):
            q.grad = scratch
        try:
            g = sums.held[step.output]
            if step.fold_function is not None:
                dx = step.layer.backward(step.ctx, g, activation_grad=(step.fold_function, step.fold_ctx.y))
                sums.add(step.fold_input, dx)
            else:
                for symbol, d in zip(step.inputs, step.layer.backward_inputs(step.ctx, g, step.needed)):
                    if d is not None:
                        sums.add(symbol, d)
        finally:
            for q, grad in zip(parameters, grads):
                scratch, q.grad = q.grad, grad
                self.backend.add(grad, scratch, grad)

    def _scratch_grads(self, i: int, parameters: list) -> list[Array]:
        """Gradient buffers for node ``i``'s parameters, laid out as a
        store lays out gradients (one buffer, aligned slots), made once."""
        found = self._scratch.get(i)
        if found is None:
            found = self._scratch[i] = packed_arrays(self.backend, [tuple(q.value.shape) for q in parameters])
        return found

    # -------------------------------------------------------------- step values
    def step_values(self, step: int) -> dict[str, float | int]:
        """Every node's values for training step ``step``, named ``{node}.{name}``."""
        values: dict[str, float | int] = {}
        if not self.stepped:
            return values
        for i, names in self.stepped:
            for name, value in self.nodes[i].layer.step_values(step, self.contexts[i].call).items():
                values[f"{i}.{name}"] = value
        return values

    def give_step_values(self, values: dict) -> None:
        """Hand each node its entries of ``values`` (as :meth:`step_values` names them)."""
        for i, names in self.stepped:  # none in most models
            self.contexts[i].values = {name: values[f"{i}.{name}"] for name in names}


class _Sums:
    """The gradients of one backward pass by tensor: the first that reaches
    a tensor is held as it is, the second is added to it into a buffer of
    the tensor's own, and later ones add into that buffer in place."""

    __slots__ = ("plan", "summed", "held", "owned")

    def __init__(self, plan: Plan, summed: frozenset[int]):
        self.plan, self.summed = plan, summed
        self.held: dict[int, Array] = {}
        self.owned: set[int] = set()

    def add(self, symbol: Symbol, g: Array) -> None:
        key = id(symbol)
        if key not in self.summed:  # its one gradient (most tensors)
            self.held[key] = g
            return
        held = self.held.get(key)
        if held is None:
            self.held[key] = g
        elif key in self.owned:
            self.plan.backend.add(held, g, held)
        else:
            total = self.plan.buffers.get(f"grad{symbol.serial}", g.shape[0], symbol.shape)
            self.plan.backend.add(held, g, total)
            self.held[key] = total
            self.owned.add(key)
