"""Any local Hugging Face sequence-classification model as a judge (toxicity, refusal, ...).

``flag_labels`` names the labels that mean "flagged" (from the model's ``id2label``); the score
is their total probability and the item is flagged when it reaches ``threshold``.
"""

from __future__ import annotations

import torch

from ..engine.tensors import model_device
from ..errors import UserInputError
from .base import Judge, Verdict
from .local_model import load_local


class ClassifierJudge(Judge):
    name = "classifier"

    def __init__(self, model, *, flag_labels, threshold: float = 0.5, batch_size: int = 16,
                 device=None, dtype="auto", name: str | None = None, **base):
        super().__init__(name=name, **base)
        self.model, self.tokenizer = model if isinstance(model, tuple) else load_local(
            model, dtype=dtype, device=device, kind="classifier")
        labels = {str(v): int(k) for k, v in self.model.config.id2label.items()}
        flag_labels = [flag_labels] if isinstance(flag_labels, str) else list(flag_labels)
        unknown = [lab for lab in flag_labels if lab not in labels]
        if unknown or not flag_labels:
            raise UserInputError(
                f"classifier flag_labels {unknown or flag_labels} not among the model's labels {sorted(labels)}")
        self.flag_ids = torch.tensor([labels[lab] for lab in flag_labels])
        self.threshold, self.batch_size = threshold, batch_size

    def judge(self, prompts, completions, metadata):
        device = model_device(self.model)
        scores = []
        with torch.no_grad():
            for start in range(0, len(completions), self.batch_size):
                # The tokenizer's own padding side and special tokens: encoders pool at [CLS].
                batch = self.tokenizer(list(completions[start : start + self.batch_size]), padding=True,
                                       truncation=True, return_tensors="pt").to(device)
                probs = torch.softmax(self.model(**batch).logits.float(), -1)
                scores += probs[:, self.flag_ids.to(device)].sum(-1).tolist()
        return [Verdict(flagged=s >= self.threshold, score=s, label="flag" if s >= self.threshold else "ok")
                for s in scores]
