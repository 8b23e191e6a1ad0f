"""Class-weighted cross-entropy (IW-ERM) in the Hugging Face ``Trainer``: override ``compute_loss``.

Run:
    python examples/hf_trainer_class_weights.py

Shows: a ``Trainer`` subclass whose ``compute_loss`` takes the logits from the model (the labels are
not passed to it, so the model's own unweighted loss is never computed) and returns
``iwlab.losses.WeightedCrossEntropyLoss``, i.e. (1/B) sum_i w_{y_i} l_i, on an imbalanced toy task
(about 10% positives, up-weighted to balance the classes). Nothing is downloaded: the model is a tiny
BERT built from a config. CPU only, about 15 s. Prints the final training loss and the recall of each
class on the training set (``final loss ...; recall per class ...``).

Gradient accumulation: the loss returned here is a per-micro-batch mean, so the ``Trainer`` must divide it
by ``gradient_accumulation_steps`` (as for any mean loss) to average over the accumulated batch. Recent
``transformers`` (4.46+) skip that division when the model's ``forward`` takes ``**kwargs`` (BERT's does)
and assume the loss was normalized by ``num_items_in_batch``; this subclass sets
``model_accepts_loss_kwargs = False``, which restores the division on every version (newer versions also
read the ``loss_is_scaled_for_ga`` attribute, set to ``False`` below to the same effect).
"""

import os
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    PrinterCallback,
    Trainer,
    TrainingArguments,
    set_seed,
)

from iwlab.losses import WeightedCrossEntropyLoss  # noqa: E402

N, MAX_LEN, VOCAB, SIGNAL = 512, 12, 100, 5  # examples, padded length, vocabulary, the positive token


class ToyTokens(Dataset):
    """Token sequences of random length; label 1 (the rare class) iff the sequence holds token ``SIGNAL``.

    Items are dicts {input_ids (L,) int64, attention_mask (L,) int64, labels () int64}, padded with 0
    (BERT's pad token) to L = ``MAX_LEN``, so the Trainer's default collator stacks them.
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = (torch.rand(n, generator=g) < 0.1).long()  # (n,) about 10% positives
        lengths = torch.randint(4, MAX_LEN + 1, (n,), generator=g)  # (n,)
        self.ids = torch.randint(10, VOCAB, (n, MAX_LEN), generator=g)  # (n, L) tokens 10..99: never SIGNAL
        where = (torch.rand(n, generator=g) * lengths).long()  # (n,) a position inside each sequence
        pos = self.labels.bool()
        self.ids[pos, where[pos]] = SIGNAL
        self.mask = (torch.arange(MAX_LEN) < lengths[:, None]).long()  # (n, L)
        self.ids = self.ids * self.mask  # padding -> token 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": self.labels[i]}


class ClassWeightedTrainer(Trainer):
    """A ``Trainer`` whose training loss is the class-weighted cross-entropy (1/B) sum_i w_{y_i} l_i."""

    # our loss is a per-micro-batch mean: let the Trainer divide it by the accumulation steps (newer versions)
    loss_is_scaled_for_ga = False

    def __init__(self, *args: object, class_weight: Tensor, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # the same on versions without loss_is_scaled_for_ga: no num_items_in_batch, so a mean loss is
        # divided by gradient_accumulation_steps (see the module docstring)
        self.model_accepts_loss_kwargs = False
        # "batch_size" normalization (the default) is the IW-ERM estimator; "weight_sum" would be
        # F.cross_entropy(weight=...)'s weighted mean, where a one-class batch loses its weight.
        self.loss_fn = WeightedCrossEntropyLoss(class_weight=class_weight).to(self.args.device)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Tensor | int | None = None,  # unused: our loss is normalized per micro-batch
    ) -> Tensor | tuple[Tensor, object]:
        inputs = dict(inputs)  # do not mutate the Trainer's batch
        labels = inputs.pop("labels")  # (B,) without labels the model returns logits only, no loss
        outputs = model(**inputs)
        loss = self.loss_fn(outputs.logits, labels)  # logits (B, C), labels (B,) -> scalar
        return (loss, outputs) if return_outputs else loss


def main() -> None:
    set_seed(0)  # Python, NumPy, torch (model init, dropout, the Trainer's shuffling)
    torch.set_num_threads(1)
    data = ToyTokens(N)
    counts = torch.bincount(data.labels, minlength=2).double()  # (2,)
    class_weight = (counts.sum() / (2 * counts)).float()  # (2,) "balanced": each class carries half the loss
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LEN,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    with tempfile.TemporaryDirectory() as out:  # nothing is saved (save_strategy="no"); Trainer wants a dir
        args = TrainingArguments(
            output_dir=out,
            max_steps=80,
            per_device_train_batch_size=16,
            gradient_accumulation_steps=2,  # an optimizer step sees 32 examples, as two micro-batches of 16
            learning_rate=3e-3,
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            logging_steps=10,
            disable_tqdm=True,
            seed=0,
        )
        trainer = ClassWeightedTrainer(model=model, args=args, train_dataset=data, class_weight=class_weight)
        trainer.remove_callback(PrinterCallback)  # keep stdout to the one line below
        trainer.train()
    final = [h["loss"] for h in trainer.state.log_history if "loss" in h][-1]  # the last logged training loss
    model.eval()
    with torch.no_grad():  # sanity: the rare class is found, not ignored
        pred = model(input_ids=data.ids, attention_mask=data.mask).logits.argmax(1)  # (N,)
    recall = [float((pred[data.labels == c] == c).float().mean()) for c in (0, 1)]
    print(f"final loss {final:.4f}; recall per class {recall[0]:.3f} / {recall[1]:.3f} ({int(counts[1])} of {N} rare)")


if __name__ == "__main__":
    main()
