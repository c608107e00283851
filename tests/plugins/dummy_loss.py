"""A loss term defined in this one file: ``dummy``, the batch mean of the squared logits. Importing the module
registers it (tests/test_registry_contract.py)."""

from fasd.student_train.loss_terms import register_loss


@register_loss("dummy", "mean squared logit (a test plugin)")
def dummy(batch, settings):
    return batch.outputs["logits"].float().pow(2).mean()
