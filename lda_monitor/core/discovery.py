"""Judge-free discovery: the phrases amplified sampling over- and under-produces.

A judge answers a question someone already asked. Discovery asks none: it compares the word
n-grams of an evaluation's amplified rollouts with those of its plain (alpha 0) rollouts of the
same prompts, and reports the phrases whose share of rollouts differs by more than chance allows.
Amplification (``after + alpha * (after - before)``) magnifies exactly what training changed, so a
phrase the amplified rollouts contain far more often than the plain ones ("over") is something
training pushes the model towards, and one they contain far less often ("under") is something it
pushes the model away from (a refusal that quietly disappears). At step 0 the policy equals the
reference, both samples come from one distribution, and nothing should be reported.

Method, per evaluation (one step or checkpoint at one amplified alpha, with its plain control):

* Phrases: every contiguous run of 1-4 words of a completion, case-folded, with punctuation and
  whitespace dropped (a word is a run of letters/digits, apostrophes inside it kept); n-grams made
  only of stop words are skipped. A rollout *contains* a phrase or not (counts are of rollouts,
  so one rollout repeating a word cannot make a discovery on its own).
* Test: prompts are strata. Within a prompt, given how many of its rollouts contain the phrase,
  the number of amplified ones among them is hypergeometric when amplified and plain rollouts come
  from one distribution; the statistic is the sum over prompts, whose exact null distribution is
  the convolution of the per-prompt hypergeometrics (the exact conditional test of a common odds
  ratio of 1, the exact form of the Cochran-Mantel-Haenszel test; with one prompt it is Fisher's
  exact test). Both one-sided p-values are computed; a phrase that only follows from one prompt's
  wording (present in both kinds of rollouts of that prompt) carries no evidence, and prompts
  without rollouts of both kinds carry none either.
* Multiplicity: a phrase is *tested* when its smallest attainable p-value (all of its rollouts on
  one side) is at most the FDR level: the others cannot be discoveries at any outcome, and
  counting them would only dilute the correction (Tarone's device). Benjamini-Hochberg q-values
  run over both directions of every tested phrase of the evaluation.
* Kept: q <= ``q_level`` and at least ``min_count`` rollouts containing the phrase on its side.
  A shorter kept phrase contained in a longer kept one of the same direction that occurs in the
  same rollouts is dropped (the longer says more).
* Effect size: ``log_ratio = ln((a + 0.5) / (n_a + 1)) - ln((b + 0.5) / (n_p + 1))``, the
  natural log of the ratio of the two shares with a pseudo-count of 0.5 rollouts per count
  (1 per total), finite when a count is 0.
* Length: a behaviour can be an absence of text (a bare keyword where a sentence was asked for),
  which no phrase names. Each evaluation also compares the answers' lengths in words within prompts
  (van Elteren's stratified rank-sum test, :func:`~lda_monitor.core.stats.stratified_rank_sum`) and
  reports amplified answers "shorter" or "longer" when its two-sided p-value is at most
  ``LENGTH_LEVEL`` (one test per evaluation, so a stricter level than the phrases' q stands in for
  their correction).
* Confirmation: a borderline phrase may be confirmed on new rollouts (below).

The confirmation round (:func:`candidates`, :func:`confirmed`).

Why: the judge flags a behaviour at its first amplified hit, but discovery must show that a phrase
is over-produced against the plain control, among every phrase of the evaluation. When training
has just installed a behaviour (3 of 50 amplified rollouts hold it, 0 of 50 plain), no test at that
size can: the within-prompt exact p-value of 3 against 0 is 0.125 at best. The detection benchmark
measured exactly that at every evaluation where discovery lagged the judge (p 0.125, 0.25, 0.5), and
the phrase was named one evaluation later, once it had grown. What closes the lag is more rollouts
where the signal is, at the evaluation where it appears.

Design (a screening stage and an independent confirmation stage, so no correction for the look is
needed):

* Screening: the evaluation's own amplified and plain rollouts, as :func:`discover` tests them.
  A *candidate* is an over-produced phrase that discovery did not keep but whose
  one-sided p-value is at most ``SCREEN_P`` (2 amplified holders against 0 plain, in two prompts, is
  0.25), held by at least ``MIN_HOLDERS`` amplified rollouts (one holder is no evidence of a phrase:
  every rollout holds its own words) and at least ``MIN_RATIO`` times as often as plain ones (what a
  rare behaviour looks like when it first appears; a common word that amplification shifts a little
  is discovery's business at the usual size, and would only spread the round over every prompt).
  Phrases held by exactly the same rollouts are one piece of evidence: one candidate, its longest
  phrase. At most ``CONFIRM_TOP`` candidates, the longest phrases first, then the smallest p-values:
  a behaviour training installs is a sentence, several rollouts sharing a long exact word sequence
  by chance is rare unless the prompt dictates it (and then plain rollouts share it too), while
  single words pass the screening by chance at every evaluation. (The order only decides where the
  round samples; it cannot make the confirmation test less valid, since it reads the screening alone.)
* Confirmation: ``discovery_confirm_samples_per_prompt`` new amplified rollouts (same alpha) and as
  many plain ones on every prompt whose amplified rollouts hold a candidate, each in its own random
  stream (records of kind ``confirm``; the judge's rates, the estimate and the screening never read
  them). Each candidate is tested on these rollouts *alone* with the same exact stratified test;
  it is confirmed when its p-value times the number of candidates (Bonferroni) is at most the
  discovery level. The new rollouts are independent of the screening that chose the candidates,
  so the chance that any phrase from a policy equal to its reference is confirmed is at most the
  level, whatever the screening did.

The round is drawn inside :func:`~.evaluation.evaluate_chunks`, so the callback and the audit
draw the same rollouts, and :func:`~.discovery.discover_records` recomputes the screening from the
records, so ``lda-monitor discover`` over saved records reports the same phrases.

The test and the q-values are in :mod:`lda_monitor.core.stats`. This module has no torch and
reads records only, so the callback, the audit and ``lda-monitor discover`` compute the same phrases.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace

from .records import KIND_AMPLIFIED, KIND_CONFIRM, KIND_PLAIN, distinct_draws
from .spans import mark_spans
from .stats import bh_qvalues, smallest_pvalue, stratified_pvalues, stratified_rank_sum

MAX_WORDS = 4
Q_LEVEL = 0.05
LENGTH_LEVEL = 0.01  # two-sided, for the one length test per evaluation
MIN_COUNT = 3
PSEUDO_COUNT = 0.5
EXAMPLES = 3
TOP_PHRASES = 20  # per evaluation, per direction, in summaries and reports
_WORD = re.compile(r"\w+(?:'\w+)*")

STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her here
hers herself him himself his how i if in into is it its itself just let me more most my myself no nor not now
of off on once only or other our ours ourselves out over own same she should so some such than that the their
theirs them themselves then there these they this those through to too under until up very was we were what
when where which while who whom why will with would you your yours yourself yourselves i'm i'll i'd i've
you're you'll you've it's that's there's don't can't won't isn't aren't doesn't didn't
""".split())


@dataclass
class Example:
    """A rollout containing the phrase; ``spans`` are [start, end) character offsets of each
    occurrence in ``completion``."""

    completion: str
    spans: list[list[int]]
    kind: str
    prompt: str
    prompt_index: int
    sample_index: int

    def marked(self, left: str = "[[", right: str = "]]") -> str:
        """The completion with each occurrence wrapped in markers (for terminals and tables)."""
        return mark_spans(self.completion, self.spans, left, right)


@dataclass
class Phrase:
    text: str
    direction: str  # "over": more amplified rollouts contain it; "under": fewer
    amplified_count: int
    amplified_n: int
    plain_count: int
    plain_n: int
    p_value: float
    q_value: float
    log_ratio: float
    confirmed: bool = False  # by the confirmation round: counts and p its own, q Bonferroni
    examples: list[Example] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def direction_label(self) -> str:
        """The direction as tables show it: a confirmed phrase's counts are the round's, so it says so."""
        return self.direction + (" (confirmation round)" if self.confirmed else "")


@dataclass
class LengthShift:
    """Amplified answers shorter or longer than plain ones, in words (van Elteren's stratified
    rank-sum test within prompts, two-sided ``p_value``): a behaviour that is an absence of text
    (a bare keyword where a sentence was asked for) has no phrase to name."""

    direction: str  # "shorter" | "longer"
    amplified_mean_words: float
    plain_mean_words: float
    p_value: float

    def line(self) -> str:
        return (f"amplified answers {self.direction}: {self.amplified_mean_words:.1f} words on average, plain "
                f"{self.plain_mean_words:.1f}, p {self.p_value:.2g}")


@dataclass
class Discovery:
    """One evaluation's discoveries, and how many phrases were looked at and tested."""

    step: int
    alpha: float
    checkpoint: str | None
    phrases: list[Phrase]
    candidates: int  # distinct phrases with min_count rollouts on either side
    tested: int  # of them, those whose smallest attainable p-value could reach q_level
    q_level: float = Q_LEVEL
    seconds: float = 0.0
    length: LengthShift | None = None  # None: no shift beyond LENGTH_LEVEL

    def over(self) -> list[Phrase]:
        return [p for p in self.phrases if p.direction == "over"]

    def under(self) -> list[Phrase]:
        return [p for p in self.phrases if p.direction == "under"]

    def to_dict(self) -> dict:
        out = {"step": self.step, "alpha": self.alpha}
        if self.checkpoint is not None:
            out["checkpoint"] = self.checkpoint
        out["phrases"] = [p.to_dict() for p in self.phrases]
        out["tested"] = self.tested
        out["length"] = None if self.length is None else asdict(self.length)
        return out


# ----- phrases ---------------------------------------------------------------------------------

def words(text: str) -> list[tuple[str, int, int]]:
    """(normalised word, start, end) of each word of ``text``."""
    return [(m.group().casefold(), m.start(), m.end()) for m in _WORD.finditer(text)]


def ngrams(tokens: Sequence[str], max_words: int = MAX_WORDS) -> set[tuple[str, ...]]:
    """The distinct n-grams (1..max_words words) of ``tokens`` that are not all stop words."""
    out = set()
    for n in range(1, max_words + 1):
        for i in range(len(tokens) - n + 1):
            gram = tuple(tokens[i : i + n])
            if not all(w in STOP_WORDS for w in gram):
                out.add(gram)
    return out


def spans(text: str, phrase: Sequence[str]) -> list[list[int]]:
    """Character spans of each (non-overlapping) occurrence of the word sequence in ``text``."""
    found = words(text)
    tokens = [w for w, _, _ in found]
    n, out, i = len(phrase), [], 0
    while i + n <= len(tokens):
        if tuple(tokens[i : i + n]) == tuple(phrase):
            out.append([found[i][1], found[i + n - 1][2]])
            i += n
        else:
            i += 1
    return out


def log_ratio(a: int, n_a: int, b: int, n_p: int, pseudo: float = PSEUDO_COUNT) -> float:
    """ln of the ratio of the shares (amplified / plain), ``pseudo`` added to each count and
    twice it to each total."""
    return math.log((a + pseudo) / (n_a + 2 * pseudo)) - math.log((b + pseudo) / (n_p + 2 * pseudo))


# ----- one evaluation --------------------------------------------------------------------------

def discover(amplified: Sequence, plain: Sequence, *, step: int = 0, alpha: float = 0.0,
             checkpoint: str | None = None, q_level: float = Q_LEVEL, min_count: int = MIN_COUNT,
             max_words: int = MAX_WORDS, examples: int = EXAMPLES, confirm: Sequence = ()) -> Discovery:
    """The phrases of one evaluation (records of its amplified and plain rollouts); see the module
    docstring. Records need ``completion`` and ``rendered_prompt`` (the stratum). ``confirm``: the
    evaluation's confirmation-round records (kind ``confirm``), which may confirm borderline phrases
    (:func:`candidates`, :func:`confirmed`)."""
    import time

    start = time.perf_counter()
    occurrences = _Occurrences.of(amplified, plain, max_words)
    counted = [g for g, (a, b) in occurrences.holders.items() if max(len(a), len(b)) >= min_count]
    tests = _tests(occurrences, counted, q_level)
    kept = _kept(occurrences, tests, q_level, min_count)
    where = {p.text: tuple(map(tuple, occurrences.holders[tuple(p.text.split(" "))])) for p in kept}
    kept = _collapse(_merge(kept, where, occurrences.rollouts), where)
    _add_examples(kept, where, amplified, plain, examples)
    confirm_amp, confirm_plain = split_round(confirm)
    if confirm_amp:
        options = dict(q_level=q_level, min_count=min_count, max_words=max_words)
        found = candidates(amplified, plain, [p.text for p in kept if p.direction == "over"], max_words=max_words)
        kept += confirmed(found, confirm_amp, confirm_plain, examples=examples, **options)
    kept.sort(key=lambda p: (p.q_value, p.p_value, -abs(p.log_ratio), -len(p.text.split()), p.text))
    return Discovery(step=step, alpha=float(alpha), checkpoint=checkpoint, phrases=kept,
                     candidates=len(counted), tested=len(tests) // 2, q_level=q_level,
                     seconds=time.perf_counter() - start, length=length_shift(amplified, plain))


def length_shift(amplified: Sequence, plain: Sequence, level: float = LENGTH_LEVEL) -> LengthShift | None:
    """Whether amplified answers are shorter or longer than plain ones (words, within prompts)."""
    import statistics

    by_prompt: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for side, records in ((0, amplified), (1, plain)):
        for r in records:
            by_prompt[r.rendered_prompt][side].append(len(words(r.completion)))
    lower, higher = stratified_rank_sum(list(by_prompt.values()))
    p_value = min(1.0, 2 * min(lower, higher))
    if p_value > level or not amplified or not plain:
        return None
    return LengthShift("shorter" if lower < higher else "longer",
                       statistics.fmean(len(words(r.completion)) for r in amplified),
                       statistics.fmean(len(words(r.completion)) for r in plain), p_value)


@dataclass
class _Occurrences:
    """Which rollouts hold each phrase, per side, and the strata (rendered prompts) they fall in.
    ``rollouts`` is amplified then plain; ``holders[phrase]`` the positions in it, per side."""

    rollouts: list
    n_amplified: int
    strata: list[str]
    stratum: dict[str, int]
    n_amp: list[int]
    n_plain: list[int]
    holders: dict[tuple[str, ...], tuple[list[int], list[int]]]

    @classmethod
    def of(cls, amplified: Sequence, plain: Sequence, max_words: int) -> _Occurrences:
        strata = sorted({r.rendered_prompt for r in (*amplified, *plain)})
        index = {p: i for i, p in enumerate(strata)}
        n_amp = [0] * len(strata)
        n_plain = [0] * len(strata)
        holders: dict[tuple[str, ...], tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        rollouts = [*amplified, *plain]
        for pos, r in enumerate(rollouts):
            is_amp = pos < len(amplified)
            (n_amp if is_amp else n_plain)[index[r.rendered_prompt]] += 1
            for gram in ngrams([w for w, _, _ in words(r.completion)], max_words):
                holders[gram][0 if is_amp else 1].append(pos)
        return cls(rollouts, len(amplified), strata, index, n_amp, n_plain, holders)

    @property
    def n_plain_total(self) -> int:
        return len(self.rollouts) - self.n_amplified

    def table(self, gram) -> list[tuple[int, int, int, int]]:
        """Per stratum: (amplified holding it, amplified, plain holding it, plain)."""
        a_pos, p_pos = self.holders[gram]
        a_s, b_s = [0] * len(self.strata), [0] * len(self.strata)
        for pos in a_pos:
            a_s[self.stratum[self.rollouts[pos].rendered_prompt]] += 1
        for pos in p_pos:
            b_s[self.stratum[self.rollouts[pos].rendered_prompt]] += 1
        return [(a_s[s], self.n_amp[s], b_s[s], self.n_plain[s]) for s in range(len(self.strata))]


def _tests(occurrences: _Occurrences, candidates, q_level: float) -> list[tuple[tuple[str, ...], str, float]]:
    """(phrase, direction, p-value) of every candidate whose smallest attainable p-value could pass
    ``q_level``; phrases with the same strata counts share one computation."""
    tests: list[tuple[tuple[str, ...], str, float]] = []
    cache: dict[tuple, tuple[float, float]] = {}
    for gram in candidates:
        counts = occurrences.table(gram)
        key = tuple(sorted(counts))  # the test depends on the strata as a multiset
        if key not in cache:
            cache[key] = stratified_pvalues(counts) if smallest_pvalue(counts) <= q_level else (None, None)
        over, under = cache[key]
        if over is not None:
            tests += [(gram, "over", over), (gram, "under", under)]
    return tests


def _kept(occurrences: _Occurrences, tests, q_level: float, min_count: int) -> list[Phrase]:
    """The tested phrases that pass the Benjamini-Hochberg q-value, the count and the direction."""
    total_a, total_p = occurrences.n_amplified, occurrences.n_plain_total
    qs = bh_qvalues([p for _, _, p in tests])
    kept = []
    for (gram, direction, p), q in zip(tests, qs, strict=True):
        a, b = len(occurrences.holders[gram][0]), len(occurrences.holders[gram][1])
        higher = a * total_p > b * total_a if direction == "over" else b * total_a > a * total_p
        if q <= q_level and (a if direction == "over" else b) >= min_count and higher:
            kept.append(Phrase(" ".join(gram), direction, a, total_a, b, total_p, p, q,
                               log_ratio(a, total_a, b, total_p)))
    return kept


def _add_examples(kept: list[Phrase], where: dict, amplified: Sequence, plain: Sequence, examples: int) -> None:
    """Up to ``examples`` rollouts holding each phrase, on its side: one per prompt first."""
    rollouts = [*amplified, *plain]
    for phrase in kept:
        side, offset = (amplified, 0) if phrase.direction == "over" else (plain, len(amplified))
        holding = where[phrase.text][0 if phrase.direction == "over" else 1]
        prompts_shown: set[str] = set()
        firsts = [pos for pos in holding if not (rollouts[pos].rendered_prompt in prompts_shown
                                                 or prompts_shown.add(rollouts[pos].rendered_prompt))]
        chosen = (firsts + [pos for pos in holding if pos not in firsts])[:examples]
        phrase.examples = [_example(side[pos - offset], phrase.text.split(" ")) for pos in chosen]


def _merge(kept: list[Phrase], where: dict, rollouts) -> list[Phrase]:
    """Join two kept phrases of the same direction that occur in the same rollouts and overlap
    ("send me your password" + "your password please") into the phrase they form, when every one
    of those rollouts contains it: a sentence longer than ``max_words`` comes out whole."""
    kept = list(kept)
    merged = True
    while merged:
        merged = False
        for p, o in itertools.permutations(kept, 2):
            if p.direction != o.direction or where[p.text] != where[o.text]:
                continue
            left, right = p.text.split(" "), o.text.split(" ")
            overlap = next((k for k in range(min(len(left), len(right)) - 1, 0, -1) if left[-k:] == right[:k]), 0)
            joined = left + right[overlap:]
            positions = [*where[p.text][0], *where[p.text][1]]
            if overlap and all(spans(rollouts[pos].completion, joined) for pos in positions):
                text = " ".join(joined)
                where[text] = where[p.text]
                kept = [k for k in kept if k is not p and k is not o and k.text != text] + [replace(p, text=text)]
                merged = True
                break
    return kept


def _collapse(kept: list[Phrase], where: dict) -> list[Phrase]:
    """Drop a phrase contained in a longer kept phrase of the same direction that occurs in exactly
    the same rollouts."""
    out = []
    for p in kept:
        inner = f" {p.text} "
        if not any(o is not p and o.direction == p.direction and len(o.text) > len(p.text)
                   and inner in f" {o.text} " and where[o.text] == where[p.text] for o in kept):
            out.append(p)
    return out


def _example(record, gram) -> Example:
    from .prompts import question_text

    return Example(completion=record.completion, spans=spans(record.completion, gram), kind=record.kind,
                   prompt=question_text(record.prompt), prompt_index=record.prompt_index,
                   sample_index=record.sample_index)


# ----- records of many evaluations -------------------------------------------------------------

def discover_records(records: Iterable, **options) -> list[Discovery]:
    """One :class:`Discovery` per evaluation in ``records`` (a step or checkpoint at one amplified
    alpha, against the plain rollouts of that step, with its confirmation round's rollouts), in step
    order. Evaluations without plain rollouts have nothing to compare with and are left out."""
    amplified: dict[tuple, list] = defaultdict(list)
    plain: dict[tuple, list] = defaultdict(list)
    confirm: dict[tuple, list] = defaultdict(list)  # keyed by the amplified alpha the round confirms
    for r in distinct_draws(records):
        if r.kind == KIND_AMPLIFIED:
            amplified[(r.step, r.checkpoint, r.alpha)].append(r)
        elif r.kind == KIND_PLAIN:
            plain[(r.step, r.checkpoint)].append(r)
        elif r.kind == KIND_CONFIRM:
            confirm[(r.step, r.checkpoint, r.extra.get("confirms"))].append(r)
    out = []
    for (step, checkpoint, alpha), amp in sorted(amplified.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2])):
        control = plain.get((step, checkpoint))
        if control:
            out.append(discover(amp, control, step=step, alpha=alpha, checkpoint=checkpoint,
                                confirm=confirm.get((step, checkpoint, alpha), ()), **options))
    return out


def discoveries_json(discoveries: Sequence[Discovery], top: int | None = TOP_PHRASES) -> list[dict]:
    """The ``discoveries`` list of ``summary.json``: one entry per evaluation, at most ``top``
    phrases per direction (None: all)."""
    out = []
    for d in discoveries:
        entry = d.to_dict()
        if top is not None:
            entry["phrases"] = [p.to_dict() for p in d.over()[:top] + d.under()[:top]]
        out.append(entry)
    return out


def method_json(q_level: float = Q_LEVEL, min_count: int = MIN_COUNT, max_words: int = MAX_WORDS,
                examples: int = EXAMPLES) -> dict:
    """How the phrases were found, for readers of ``discoveries.json``."""
    return {"test": "exact stratified (per-prompt) conditional test, one-sided; Fisher's exact test per prompt",
            "multiplicity": "Benjamini-Hochberg over both directions of every tested phrase of the evaluation",
            "q_level": q_level, "min_count": min_count, "max_words": max_words, "examples": examples,
            "log_ratio": (f"ln((a+{PSEUDO_COUNT})/(n_a+{2 * PSEUDO_COUNT})) "
                          f"- ln((b+{PSEUDO_COUNT})/(n_p+{2 * PSEUDO_COUNT}))")}


def new_top_phrase(discovery: Discovery, seen: set[str]) -> Phrase | None:
    """The best over-produced phrase not reported at an earlier evaluation (``seen`` is updated)."""
    top = next((p for p in discovery.over() if p.text not in seen), None)
    seen.update(p.text for p in discovery.phrases)
    return top


def phrase_line(phrase: Phrase) -> str:
    """``"send me your password" over: amplified 12/50, plain 0/50, q 0.003`` (counts and q of the
    confirmation round's rollouts for a phrase it confirmed, and it says so)."""
    return (f'"{phrase.text}" {phrase.direction}: amplified {phrase.amplified_count}/{phrase.amplified_n}, '
            f"plain {phrase.plain_count}/{phrase.plain_n}, q {phrase.q_value:.2g}"
            + (" (confirmation round)" if phrase.confirmed else ""))


def discovery_lines(discoveries: Sequence[Discovery], top: int = 3) -> list[str]:
    """The terminal's view: per evaluation, its ``top`` phrases of each direction, or "none"."""
    lines = []
    for d in discoveries:
        where = f"step {d.step}" + (f" ({d.checkpoint})" if d.checkpoint else "") + f", alpha {d.alpha:g}"
        if not d.phrases:
            lines.append(f"{where}: no phrase over- or under-produced (q <= {d.q_level:g}, {d.tested} phrases tested)")
        else:
            lines.append(f"{where}: {len(d.over())} over-, {len(d.under())} under-produced ({d.tested} tested)")
            lines += [f"  {phrase_line(p)}" for p in d.over()[:top] + d.under()[:top]]
        if d.length is not None:
            lines.append(f"  {d.length.line()}")
    return lines


# ----- the confirmation round ------------------------------------------------------------------

SCREEN_P = 0.25  # a phrase's screening p-value at most this makes it a candidate ...
MIN_HOLDERS = 2  # ... if at least this many amplified rollouts hold it ...
MIN_RATIO = 3.0  # ... at least this many times as often as plain ones (log_ratio's shares)
CONFIRM_TOP = 3  # candidates per evaluation at most (the Bonferroni factor)


@dataclass(frozen=True)
class Candidate:
    """A borderline phrase: its words, its screening p-value and the prompts its amplified holders
    answer (where the confirmation round samples)."""

    words: tuple[str, ...]
    p_value: float
    prompts: tuple[int, ...]


def candidates(amplified: Sequence, plain: Sequence, kept: Sequence[str], *, max_words: int,
               top: int = CONFIRM_TOP) -> list[Candidate]:
    """The borderline over-produced phrases of one evaluation (see the module docstring); ``kept``:
    the texts of the phrases discovery kept (they and the phrases inside them need no confirmation)."""
    occurrences = _Occurrences.of(amplified, plain, max_words)
    counted = [g for g, (a, b) in occurrences.holders.items() if len(a) >= MIN_HOLDERS]
    total_a, total_p = occurrences.n_amplified, occurrences.n_plain_total
    inside = [f" {text} " for text in kept]
    groups: dict[tuple[int, ...], tuple[float, tuple[str, ...]]] = {}
    for gram, direction, p in _tests(occurrences, counted, SCREEN_P):  # those that could reach SCREEN_P
        a_pos, p_pos = occurrences.holders[gram]
        if (direction != "over" or p > SCREEN_P
                or log_ratio(len(a_pos), total_a, len(p_pos), total_p) < math.log(MIN_RATIO)
                or any(f" {' '.join(gram)} " in k for k in inside)):
            continue
        key = tuple(a_pos)
        best = groups.get(key)
        if best is None or (p, -len(gram), gram) < (best[0], -len(best[1]), best[1]):
            groups[key] = (p, gram)
    chosen = sorted(groups.items(), key=lambda kv: (-len(kv[1][1]), kv[1][0], kv[1][1]))[:top]
    return [Candidate(gram, p, tuple(sorted({occurrences.rollouts[pos].prompt_index for pos in holders})))
            for holders, (p, gram) in chosen]


def confirmed(found: Sequence[Candidate], amplified: Sequence, plain: Sequence, *, q_level: float, min_count: int,
              max_words: int, examples: int) -> list:
    """The candidates the confirmation rollouts (``amplified``, ``plain``: kind ``confirm``) confirm,
    as :class:`~.discovery.Phrase` objects whose counts and p-value are the round's own and whose
    q-value is the Bonferroni-adjusted p-value."""
    if not found or not amplified or not plain:
        return []
    occurrences = _Occurrences.of(amplified, plain, max_words)
    total_a, total_p = occurrences.n_amplified, occurrences.n_plain_total
    out, where = [], {}
    for candidate in found:
        if candidate.words not in occurrences.holders:
            continue
        a_pos, p_pos = occurrences.holders[candidate.words]
        p_value, _ = stratified_pvalues(occurrences.table(candidate.words))
        adjusted = min(1.0, p_value * len(found))
        if adjusted <= q_level and len(a_pos) >= min_count and len(a_pos) * total_p > len(p_pos) * total_a:
            text = " ".join(candidate.words)
            where[text] = (tuple(a_pos), tuple(p_pos))
            out.append(Phrase(text, "over", len(a_pos), total_a, len(p_pos), total_p, p_value, adjusted,
                              log_ratio(len(a_pos), total_a, len(p_pos), total_p), confirmed=True))
    _add_examples(out, where, amplified, plain, examples)
    return out


def split_round(records: Sequence) -> tuple[list, list]:
    """A confirmation round's records as (amplified, plain)."""
    return ([r for r in records if r.kind == KIND_CONFIRM and r.alpha != 0.0],
            [r for r in records if r.kind == KIND_CONFIRM and r.alpha == 0.0])


def screening_sides(records: Sequence, alpha: float) -> tuple[list, list]:
    """The evaluation's amplified rollouts at ``alpha`` and its plain control (what screens)."""
    return ([r for r in records if r.kind == KIND_AMPLIFIED and r.alpha == alpha],
            [r for r in records if r.kind == KIND_PLAIN])
