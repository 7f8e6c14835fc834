"""gradwatch's own exceptions."""

from __future__ import annotations


class NonFiniteError(FloatingPointError):
    """A NaN or infinity in the loss, a gradient or a batch statistic of a training step.

    Raised by :meth:`gradwatch.MLP.train_step` before anything changes: parameters, optimiser
    state, batch-norm running statistics and the dropout step are bit-identical to what they
    were before the call. A subclass of ``FloatingPointError`` (hence of ``ArithmeticError``).

    Attributes
    ----------
    layer : str
        Where the value appeared first in backward order: ``"loss"``, ``"dense{i}"`` or
        ``"bn{i}"`` (``i`` counts layers from 0, the output layer last), or ``"all layers"`` for
        a gradient norm that overflows while clipping by norm.
    tensor : str
        What was not finite: ``"value"`` (of the loss), ``"weight gradient"``, ``"bias
        gradient"``, ``"gamma gradient"``, ``"beta gradient"``, ``"batch mean"``, ``"batch
        variance"`` or ``"gradient norm"``.
    """

    def __init__(self, message: str, layer: str, tensor: str) -> None:
        super().__init__(message)
        self.layer = layer
        self.tensor = tensor

    def __reduce__(self):
        return type(self), (str(self), self.layer, self.tensor)


__all__ = ["NonFiniteError"]
