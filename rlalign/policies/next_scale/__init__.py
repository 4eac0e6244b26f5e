"""Next-scale (VAR / NextFlow style) generator family: multi-scale VQ tokenizer and transformer."""

from rlalign.policies.next_scale.var_import import from_var_checkpoint

__all__ = ["from_var_checkpoint"]
