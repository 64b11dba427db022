"""Which verdicts the model learns: a client's record vouches for its corrections.

An honest user says "Incorrect" about as often as the model is wrong, and the
model is rarely wrong when it is confident (out of domain too: about one
confident prediction in twenty was wrong on the shared sentence sets). A liar
says "Incorrect" to confident predictions most of the time. So each verdict is
judged, as it is committed, on what the log knows of its client (its address,
or whatever :mod:`sentiment.web` names clients by):

* a client that contradicted more than half of its confident predictions (and at
  least two) is not learned from any more;
* a contradiction of a confident prediction is learned only from a client whose
  record vouches for it: enough confident predictions of its own, few of them
  contradicted;
* the same two rules hold, with looser thresholds, for the share of the
  client's *verdicts* that contradict confident predictions, which asking for
  many predictions and judging few cannot dilute (looser, because an honest user
  who presses only when the model is wrong contradicts confident predictions in
  a quarter to a third of its verdicts: that many of the model's mistakes are
  confident ones);
* clients with too little record form one pool (that is how a liar spreading
  over many addresses looks): when the pool's newest verdicts contradict
  confident predictions too often, its verdicts are held until that passes.

A held verdict is quarantined with the reason (an operator lists, releases or
rejects it, per client too: ``flask --app app feedback ...``). The decision is
stored with the verdict, so replays and every process follow it. The figures
each rule was chosen by are in ``docs/learning-loop.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sentiment.storage.log import Evidence, Judgement

DISTRUSTED = "trust: the client contradicts too many of its confident predictions"
UNPROVEN = ("trust: contradicts a confident prediction, and the client's record does not "
            "vouch for it yet")
FLOOD = "trust: new clients' recent verdicts contradict confident predictions too often"
TRUST_REASONS = (DISTRUSTED, UNPROVEN, FLOOD)


@dataclass(frozen=True)
class TrustPolicy:
    """The rules above, with their thresholds (implements :class:`storage.log.Judge`)."""

    confident: float = 0.8  # probability of the predicted label from which it counts
    established: int = 8  # confident predictions a client needs for a record of its own
    vouches: float = 0.2  # at most this share contradicted: its contradictions are learned
    distrust: float = 0.5  # more than this share contradicted (and ...)
    distrust_min: int = 2  # ... at least this many): nothing more is learned from it
    verdicts_vouch: float = 0.4  # at most this share of its verdicts contradicted, too
    verdicts_distrust: float = 0.5  # more than this share of its verdicts (and ...)
    verdicts_distrust_min: int = 8  # ... at least this many): nothing more is learned
    newcomer_window: int = 100  # newest verdicts of clients without a record, judged together
    newcomer_min: int = 20  # ... once there are this many
    newcomer_limit: float = 0.35  # held while more than this share contradict confident ones

    def judge(self, evidence: Evidence) -> Judgement:
        seen, contradicted = evidence.client_confident, evidence.client_contradicted
        # The shares of its confident predictions and of its verdicts that the
        # client contradicted, shrunk towards zero while it has few (a first
        # contradiction is not a record).
        share = (contradicted + 0.1) / (seen + 1)
        of_verdicts = (contradicted + 0.1) / (evidence.client_verdicts + 1)
        distrusted = ((contradicted >= self.distrust_min and share > self.distrust)
                      or (contradicted >= self.verdicts_distrust_min
                          and of_verdicts > self.verdicts_distrust))
        contradicts = not evidence.correct and evidence.probability >= self.confident
        new = seen < self.established
        reason = None
        if new and self._flooded(evidence.newcomers):
            reason = FLOOD
        elif distrusted:
            reason = DISTRUSTED
        elif contradicts and (new or share > self.vouches or of_verdicts > self.verdicts_vouch):
            reason = UNPROVEN
        return Judgement(reason is None, reason, new)

    def confident_enough(self, contradicted: int) -> int:
        """Past this many confident predictions, the judgement is the same for any more:
        the client is established and its share is at most :attr:`vouches` (so under
        :attr:`distrust`)."""
        return max(self.established, math.ceil((contradicted + 0.1) / self.vouches)) + 1

    def _flooded(self, newcomers: tuple[bool, ...]) -> bool:
        return (len(newcomers) >= self.newcomer_min
                and sum(newcomers) > self.newcomer_limit * len(newcomers))


__all__ = ["DISTRUSTED", "FLOOD", "TRUST_REASONS", "UNPROVEN", "TrustPolicy"]
