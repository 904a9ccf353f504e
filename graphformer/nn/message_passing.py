"""The base class of graphformer's layers: a PyG ``MessagePassing`` whose ``forward`` may skip ``propagate``.

graphformer's layers subclass :class:`torch_geometric.nn.MessagePassing`. Their ``message`` / ``edge_update``
/ ``aggregate`` / ``update`` are the reference path, written as PyG writes them, so everything PyG hangs on
``propagate`` works unchanged: explain masks (``Explainer``, ``GNNExplainer``), ``AttentionExplainer`` (it reads
``alpha`` from ``message``'s arguments), message/aggregate/propagate hooks, ``decomposed_layers`` and subclasses
that override ``message``. When none of that is in play, ``forward`` hands the whole layer to
:mod:`graphformer.ops` (the one place that decides how attention runs), which is faster and keeps less memory.

:meth:`MessagePassing.needs_reference` is the one predicate that decides; no layer grows its own conditions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch_geometric.nn import MessagePassing as PyGMessagePassing

# methods through which PyG (or a user's subclass) can observe or change the per-edge computation
_REFERENCE_METHODS = (
    "propagate", "message", "aggregate", "update", "message_and_aggregate", "edge_update", "edge_updater",
    "explain_message",
)
_HOOK_DICTS = (
    "_propagate_forward_pre_hooks", "_propagate_forward_hooks", "_message_forward_pre_hooks",
    "_message_forward_hooks", "_aggregate_forward_pre_hooks", "_aggregate_forward_hooks",
    "_message_and_aggregate_forward_pre_hooks", "_message_and_aggregate_forward_hooks",
    "_edge_update_forward_pre_hooks", "_edge_update_forward_hooks",
)


class MessagePassing(PyGMessagePassing):
    """PyG's ``MessagePassing`` plus the decision "may this call skip ``propagate``?".

    A class defined inside graphformer owns its fast path; a user's subclass that overrides any of
    ``message``, ``aggregate``, ``update``, ``message_and_aggregate``, ``edge_update`` or ``propagate``
    (or an instance with such a method replaced) always runs the reference, so the override takes effect.
    """

    _fast_path_owner: type | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("graphformer."):
            cls._fast_path_owner = cls

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # a lazy layer (in_channels=-1) saved before its first forward holds uninitialised weights; loading them
        # into a built layer would silently un-initialise it (torch.nn.Linear / PyG's Linear accept that)
        for name, param in self.named_parameters(recurse=True):
            incoming = state_dict.get(prefix + name)
            if isinstance(incoming, nn.parameter.UninitializedParameter) and not isinstance(
                param, nn.parameter.UninitializedParameter
            ):
                raise ValueError(
                    f"cannot load `{prefix + name}`: the state_dict comes from a lazy layer (`in_channels=-1`) that "
                    "has not run a forward yet, so its weights do not exist; run one forward pass on the lazy layer "
                    "(or build it with explicit `in_channels`) before saving its state_dict"
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def needs_reference(self) -> bool:
        """Whether this call must run PyG's ``propagate`` (the per-edge reference path).

        True while explaining (``explain`` set, e.g. by ``Explainer``), when any message-passing hook is
        registered, with ``decomposed_layers > 1``, under TorchScript, or when ``message`` / ``aggregate`` /
        ``update`` / ``edge_update`` / ``propagate`` are overridden by a subclass or on the instance.
        """
        if torch.jit.is_scripting() or self._explain or self.decomposed_layers > 1:
            return True
        if any(getattr(self, name, None) for name in _HOOK_DICTS):
            return True
        if _overrides_reference(type(self)):
            return True
        # an instance-level replacement (PyG's own explain_message recipe, or monkeypatching); PyG itself swaps
        # `propagate` per instance (explain / decomposed layers), which the checks above already cover
        return any(name in self.__dict__ for name in ("message", "aggregate", "update", "edge_update",
                                                      "explain_message", "message_and_aggregate"))


_OVERRIDES: dict[type, bool] = {}


def _overrides_reference(cls: type) -> bool:
    """Whether a class between ``cls`` and its graphformer fast-path owner defines a reference-path method.

    PyG generates ``propagate`` / ``edge_updater`` (and ``collect``) per class from templates; those generated
    functions live in a module named after the class and do not count as overrides.
    """
    hit = _OVERRIDES.get(cls)
    if hit is not None:
        return hit
    owner = getattr(cls, "_fast_path_owner", None)
    result = owner is None
    if not result:
        for klass in cls.__mro__:
            if klass is owner:
                break
            for name in _REFERENCE_METHODS:
                func = klass.__dict__.get(name)
                if func is None:
                    continue
                generated = getattr(func, "__module__", "") or ""
                if name in ("propagate", "edge_updater") and generated.startswith(
                    f"{klass.__module__}_{klass.__name__}"
                ):
                    continue
                result = True
    _OVERRIDES[cls] = result
    return result


class AttentionMessagePassing(MessagePassing):
    """A layer whose per-edge weights come from a score aggregator held in ``self.attention`` (softmax
    :class:`~graphformer.aggr.Attention` by default); ``dropout`` reads and sets that aggregator's dropout."""

    @property
    def dropout(self) -> float:
        """Attention dropout probability (held by the attention normalisation)."""
        return float(getattr(self.attention, "dropout", 0.0))

    @dropout.setter
    def dropout(self, p: float) -> None:
        self.attention.dropout = p
