"""Applies stored feedback to the live model exactly once, checkpoints it, guards it.

Invariant: the live model equals the base model after ``partial_fit`` on every
*accepted* verdict of the log, one at a time, in id order, each followed by the
replays of the accepted verdicts the model's :attr:`~ServedModel.replays` places
before it. Everything here keeps that true:

* a verdict is committed to the log first, then :meth:`Learner.sync` applies
  every accepted row after ``applied_id``, in id order, under a lock;
* a checkpoint stores the state with the last id it contains, so a restart
  (clean or ``kill -9``) loads it and replays only newer rows;
* the guard scores a checkpoint on the shipped holdout before it becomes
  current; if accuracy fell more than the margin, the rows since the last
  good version are quarantined (kept, flagged, not applied) and every process
  rebuilds from that version, because the log's generation changed;
* several processes sharing the instance folder, or several hosts sharing a
  PostgreSQL log (whose versions then live in the database too), follow the
  same log, so they converge on bit-identical models; a follower thread wakes
  on the log's notifications to learn other hosts' verdicts with no request.

Which verdicts are accepted is decided as each is committed
(:mod:`sentiment.learning.trust`) and stored with it.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sentiment import memory as heap
from sentiment.learning.guard import Holdout
from sentiment.learning.timer import PeriodicThread
from sentiment.learning.trust import TrustPolicy
from sentiment.learning.versions import BASE, CorruptVersion, VersionInfo, VersionStore
from sentiment.models.protocol import Features, ServedModel, State
from sentiment.models.state import Prediction
from sentiment.storage.log import FeedbackLog, LogUnavailable, UnknownPrediction, Verdict

log = logging.getLogger(__name__)

# How long the follower waits for a notification before looking at the log anyway.
FOLLOW_POLL = 0.5
# Seconds between two calls of the log's housekeeping (see Learner.start_log_upkeep).
LOG_UPKEEP_SECONDS = 0.25


@dataclass(frozen=True)
class LearnerConfig:
    checkpoint_every: int = 200  # verdicts applied since the last version
    checkpoint_seconds: float = 60.0  # ... or this long with unsaved verdicts
    guard: bool = True
    guard_margin: float = 0.01  # 1 accuracy point on the holdout
    keep_versions: int = 10  # state files kept on disk (see VersionStore.prune)
    # While other verdicts of this process are being committed, wait up to this
    # long for them, so that one partial_fit learns them all (see Learner.verdict).
    group_wait: float = 0.003
    trust: TrustPolicy | None = TrustPolicy()  # None: every first verdict is accepted


@dataclass(frozen=True)
class GuardResult:
    published: VersionInfo | None
    quarantined: int
    accuracy: float | None
    threshold: float | None


def _learn(model: ServedModel, verdicts: list[Verdict], history: list[Verdict],
           chunk: int = 256) -> Iterator[list[Verdict]]:
    """Teach ``model`` the verdicts in id order, yielding each group once it is learned.

    Each verdict is followed by the replays of the accepted verdicts
    ``model.replays`` places before it: ``history`` holds the accepted verdicts
    just before ``verdicts[0]`` (the last ``max(model.replays)`` of them, or all
    there are). Groups of ``chunk`` verdicts when one ``partial_fit`` over their rows
    equals one per row. The features come from those stored with each
    prediction when possible.
    """
    sequence = history + verdicts
    exact = model.learns_in_batches_exactly
    step = chunk if exact else 1
    for start in range(0, len(verdicts), step):
        rows: list[Verdict] = []
        for at in range(len(history) + start, len(history) + min(start + step, len(verdicts))):
            rows.append(sequence[at])
            rows += [sequence[at - back] for back in model.replays if at - back >= 0]
        X = model.stored_features([v.review for v in rows], [v.features for v in rows])
        y = np.array([v.label for v in rows])
        if exact:
            model.learn_features(X, y)
        else:
            for row in range(len(rows)):
                model.learn_features(X[row:row + 1], y[row:row + 1])
        yield verdicts[start:start + step]


def _history(model: ServedModel, feedback: FeedbackLog,
             verdicts: list[Verdict]) -> list[Verdict]:
    """What the replays of ``verdicts`` reach back to (see :func:`_learn`)."""
    reach = max(model.replays, default=0)
    return feedback.accepted_before(verdicts[0].id, reach) if verdicts and reach else []


class Learner:
    def __init__(
        self,
        base: ServedModel,
        feedback: FeedbackLog,
        models_dir: Path,
        holdout_path: Path | None = None,
        config: LearnerConfig | None = None,
    ) -> None:
        self.base = base
        self.feedback = feedback
        self.config = config or LearnerConfig()
        # The base never learns (self.model is its clone): no need to copy its state.
        self.store = VersionStore(models_dir, base.base_id, base.state(snapshot=False),
                                  base.state_from_bytes, files=feedback.version_files())
        self.holdout = Holdout(holdout_path, self.store.folder / f"holdout-{base.base_id}.npy")
        self._base_accuracy: float | None = None
        self._lock = threading.RLock()
        self.model = base.clone()
        self.version: VersionInfo = self.store.base_info
        self.applied_id = 0
        self.generation = -1
        self._head_seen = 0  # highest verdict id already looked at (applied or not)
        self._unsaved = 0
        self._last_checkpoint = time.monotonic()
        self._committing = 0  # verdicts of this process between request and commit
        self._commits = threading.Condition()
        self._timer: PeriodicThread | None = None
        self._upkeep: PeriodicThread | None = None
        self._follower: threading.Thread | None = None
        self._stop_following = threading.Event()
        # Seconds from each verdict's commit elsewhere to its learning here (see
        # follow_lag); the ids this process committed itself are left out.
        self._lags: deque[float] = deque(maxlen=10_000)
        self._committed_here: set[int] = set()
        # Lags of verdicts learned while a verdict of this process was between its
        # commit and noting its id: kept back until it is noted (one may be ours).
        self._lags_held: list[tuple[int, float]] = []
        # While the log is out of reach nothing can follow it: the verdicts the
        # first sync after it is back catches up on were waited for by the
        # outage, not by following. (By sync, not by clock: ``created`` is cut
        # to the millisecond, too coarse to tell them from the next ones.)
        self._log_lost = False
        self._published_checked = 0.0
        # (model it describes: generation, version, last verdict applied; sha256): see status()
        self._digest: tuple[tuple[()] | tuple[int, str, int], str] = ((), "")
        with self._lock:
            self._reload()

    # -- following the log ------------------------------------------------
    def _reload(self) -> None:
        """Rebuild from the current version and replay the newer accepted rows."""
        self._head_seen, self.generation = self.feedback.head()
        self.version, state = self.store.load_current()
        self.model.set_state(state)
        self.applied_id = self.version.last_feedback_id
        self._unsaved = 0
        # A replay, not news: how old these verdicts are says nothing of following.
        self._apply(self.feedback.accepted_after(self.applied_id), following=False)

    def _apply(self, verdicts: list[Verdict], following: bool = True) -> None:
        """Learn from ``verdicts`` in id order, exactly as one ``partial_fit`` per row."""
        for part in _learn(self.model, verdicts, _history(self.model, self.feedback, verdicts)):
            self.applied_id = part[-1].id
            self._unsaved += len(part)
            if following:
                self._note_lags(part)

    def _note_lags(self, learned: list[Verdict]) -> None:
        """How long after its commit each verdict of another process was learned here.

        Measured from the ``created`` time its process stamped as it committed
        (one clock on one machine; across hosts, their clocks' skew adds to it).
        """
        now = time.time()
        with self._commits:
            mine = self._committed_here
            for verdict in learned:
                if verdict.id in mine or not verdict.created:
                    continue
                lag = now - dt.datetime.fromisoformat(verdict.created).timestamp()
                if self._committing:  # it may be one of those, not yet noted as ours
                    self._lags_held.append((verdict.id, lag))
                else:
                    self._lags.append(lag)
            # Learned in id order: an id of ours at or below the last one learned is
            # learned, or held (never to be): either way done with.
            self._committed_here = {i for i in mine if i > learned[-1].id}

    def follow_lag(self) -> dict[str, float | int | None]:
        """p50 and p99, in ms, of how long after their commit this process learned the
        last 10,000 verdicts taken by other processes (and hosts) while it followed the
        log: not those it replayed when it started or rebuilt, nor those an outage of
        the log's database kept from it (what its first sync after the outage read)."""
        lags = sorted(self._lags)
        if not lags:
            return {"p50": None, "p99": None, "verdicts": 0}

        def at(share: float) -> float:
            return round(1000 * lags[min(len(lags) - 1, int(share * len(lags)))], 1)

        return {"p50": at(0.5), "p99": at(0.99), "verdicts": len(lags)}

    def sync(self) -> None:
        """Catch up with the log (new rows, or a quarantine elsewhere); cheap when idle.

        Also checkpoints when one is due, even with no new rows: that is how
        the background timer saves verdicts after ``checkpoint_seconds``. With
        the timer running (a server), a request that finds a checkpoint due
        wakes the timer instead of scoring the holdout itself: for a deep
        model that takes seconds, and no request should wait for it.
        """
        self._sync(checkpoint_here=self._timer is None or not self._timer.alive)

    def _sync_in_background(self) -> None:
        self._sync(checkpoint_here=True)

    def _sync(self, checkpoint_here: bool) -> None:
        """:meth:`sync`, for requests and the checkpoint timer alike."""
        try:
            self._catch_up(checkpoint_here)
            self._log_lost = False
        except LogUnavailable:
            # The database is out of reach: serve on with the live model (which
            # holds every verdict applied so far); the next sync catches up.
            self._log_lost = True
            log.warning("cannot read the feedback log; serving the live model as it is")

    def _catch_up(self, checkpoint_here: bool) -> None:
        self._adopt_published()
        head_id, generation = self.feedback.head()
        if (head_id <= self._head_seen and generation == self.generation
                and not self._checkpoint_due()):
            return
        with self._lock:
            head_id, generation = self.feedback.head()
            if generation != self.generation:
                self._reload()
            else:
                self._apply(self.feedback.accepted_after(self.applied_id),
                            following=not self._log_lost)
                # Every row <= head_id was committed before the read above (ids are
                # handed out in commit order), so it is applied unless not accepted.
                self._head_seen = max(self._head_seen, head_id)
            due = self._checkpoint_due()
        if due and not checkpoint_here:
            assert self._timer is not None
            self._timer.wake()
        elif due:
            try:
                self._run_checkpoint(force=False, if_due=True)
            except (OSError, sqlite3.Error, LogUnavailable):
                # The verdicts are committed and applied; only their snapshot
                # failed (disk full, say). Serve on and retry at the next one.
                log.exception("checkpoint failed; will retry")
                self._last_checkpoint = time.monotonic()

    def _adopt_published(self) -> None:
        """Take the name of a version another process published, when this model is it.

        Each process checkpoints on its own schedule, so one model state could
        be named after whichever version its process last wrote (v000007+21
        here, v000008+21 there). A version holding verdicts up to an id this
        model has applied, on the same log generation, is this model up to
        there: every process then reports the newest one. Looked at every
        0.2 s at most (a file read), and read whole only when it changed.
        """
        now = time.monotonic()
        if now - self._published_checked < 0.2:
            return
        self._published_checked = now
        name = self.store.current_name()
        if name == self.version.name:
            return
        with self._lock:
            if self.feedback.head()[1] != self.generation:
                return  # a quarantine: the next sync rebuilds from the current version
            try:
                info, _ = self.store.load(name)  # its state checked against its sha256
            except CorruptVersion:
                return  # a torn or damaged version is never taken, its name neither
            if self.version.last_feedback_id <= info.last_feedback_id <= self.applied_id:
                self.version = info
                self._unsaved = len(self.feedback.accepted_after(info.last_feedback_id,
                                                                 self.applied_id))

    def _checkpoint_due(self) -> bool:
        if self._unsaved == 0:
            return False
        return (self._unsaved >= self.config.checkpoint_every
                or time.monotonic() - self._last_checkpoint >= self.config.checkpoint_seconds)

    @property
    def model_version(self) -> str:
        """The version in force plus the last verdict applied on top of it."""
        return f"{self.version.name}+{self.applied_id}"

    # -- the two things the app does -------------------------------------
    def predict(self, reviews: list[str], client: str | None = None,
                features: Features | None = None,
                browser: str | None = None) -> list[tuple[str | None, Prediction, str]]:
        """Predict and record each prediction; returns (token, prediction, version).

        The token is what a verdict on the prediction names (:meth:`verdict`):
        only whoever got the prediction knows it. ``browser``: the asking
        browser's id (the results page's), stored for its permalinks.

        ``features``: the reviews already vectorised by the caller (features do
        not depend on the model's state, only on its base). They are stored
        with the predictions, so that every process learns a verdict without
        vectorising its review again.

        With the log's database out of reach, the live model still answers,
        without tokens: those predictions are not recorded, so no verdict can
        be given on them.
        """
        self.sync()
        model, version = self.model, self.model_version
        if features is None:
            features = model.transform(reviews)
        predictions = model.predict_features(features)
        stored = model.encode_rows(features)
        try:
            rows = self.feedback.add_predictions(
                [(r, int(p.label == "positive"), p.probability, f)
                 for r, p, f in zip(reviews, predictions, stored, strict=True)],
                version, client, browser,
            )
        except LogUnavailable:
            log.warning("the feedback log is out of reach: %d predictions served unrecorded",
                        len(reviews))
            return [(None, p, version) for p in predictions]
        return [(token, p, version) for (_, token), p in zip(rows, predictions, strict=True)]

    def verdict(self, token: str, correct: bool, client: str | None = None) -> Verdict:
        """Commit a verdict on the prediction ``token`` names, then apply it (and anything
        before it) to the live model. UnknownPrediction if no prediction has that token.

        Verdicts arriving together are learned together: when other threads are
        committing theirs, this one waits for them (at most ``group_wait``), so
        that whoever applies next learns the whole group in one ``partial_fit``.
        One call costs about as much as one verdict (sklearn's checks, not the
        arithmetic), and the result is bit for bit the same as one call each.
        """
        prediction_id = self.feedback.prediction_id(token)
        if prediction_id is None:
            raise UnknownPrediction("no prediction with that id: it is given only to whoever "
                                    "asked for the prediction")
        with self._commits:
            self._committing += 1
        try:
            verdict = self.feedback.add_verdict(prediction_id, correct, client,
                                                self.config.trust)
            with self._commits:
                self._committed_here.add(verdict.id)
        finally:
            with self._commits:
                self._committing -= 1
                if not self._committing:  # every id of ours is noted now
                    self._lags.extend(lag for id_, lag in self._lags_held
                                      if id_ not in self._committed_here)
                    self._lags_held.clear()
                self._commits.notify_all()
        if self.model.learns_in_batches_exactly:
            with self._commits:
                self._commits.wait_for(lambda: self._committing == 0, self.config.group_wait)
        self.sync()
        self._prepare_guard()
        return verdict

    def _prepare_guard(self) -> None:
        """Vectorise the holdout in the background once verdicts start coming (see
        :meth:`Holdout.prepare_in_background`)."""
        if self.config.guard:
            self.holdout.prepare_in_background(self.model)

    def holdout_accuracy(self, state: State | None = None,
                         holdout: tuple[Features, np.ndarray] | None = None
                         ) -> float | None:
        """Accuracy of the live model (or of ``state``) on ``holdout`` (default: read it)."""
        data = holdout or self.holdout.features(self.model)
        if data is None:
            return None
        if state is not None:
            return self.model.clone(state).accuracy(*data)
        with self._lock:  # the live model learns in place, under this lock
            return self.model.accuracy(*data)

    def base_accuracy(self, holdout: tuple[Features, np.ndarray] | None = None
                      ) -> float | None:
        if self._base_accuracy is None:
            self._base_accuracy = self.holdout_accuracy(self.store.base_state, holdout)
        return self._base_accuracy

    def _current_version(self) -> VersionInfo:
        """The version in force on disk, or its nearest valid ancestor.

        Usually the one this learner loaded or wrote; another process may have
        published a newer one, and a corrupt one is skipped (as at start), so
        the guard and the new version's parent never rest on unreadable files.
        """
        if self.store.current_name() == self.version.name:
            return self.version
        return self.store.load_current()[0]

    def checkpoint(self, force: bool = False) -> GuardResult | None:
        """Score the live model; publish it as a version, or quarantine what hurt it."""
        return self._run_checkpoint(force, if_due=False)

    def _run_checkpoint(self, force: bool, if_due: bool) -> GuardResult | None:
        """:meth:`checkpoint` under the store's lock, which one checkpoint at a time holds.

        ``if_due``: a checkpoint that :meth:`sync` found due. It gives way at
        once if another thread or process is checkpointing (that one is
        saving the same log), so no request ever queues behind one.
        """
        if not self.store.lock.acquire(blocking=not if_due):
            return None
        try:
            holdout = self.holdout.features(self.model) if self.config.guard else None
            result = self._checkpoint(force, if_due, holdout)
            del holdout
        finally:
            self.store.lock.release()
        if result is not None:
            # The holdout, scoring copies of the weights and serialising the
            # state leave garbage that glibc would otherwise keep.
            heap.release_free_memory()
        return result

    def _checkpoint(self, force: bool, if_due: bool,
                    holdout: tuple[Features, np.ndarray] | None) -> GuardResult | None:
        """Snapshot the live model, score it, then publish it or quarantine what hurt it.

        Only the snapshot is taken under the learner's lock, and only a
        quarantine under the log's write lock: scoring and writing the state
        used to hold both, so every request of every process that
        wanted to record a prediction or a verdict waited for each checkpoint.
        Verdicts committed meanwhile are simply not in this version; the store's
        lock keeps other checkpoints and rollbacks (the only writers of
        versions and of quarantines) out until it is done.
        """
        with self._lock:
            head_id, generation = self.feedback.head()
            if generation != self.generation:
                self._reload()
            self._apply(self.feedback.accepted_after(self.applied_id))
            self._head_seen = max(self._head_seen, head_id)
            current = self._current_version()
            if current.name != self.version.name:
                # Another process published since (same log prefix, same model up to
                # its last id): we are that version plus what we applied after it.
                self.version = current
                self._unsaved = len(self.feedback.accepted_after(current.last_feedback_id,
                                                                 self.applied_id))
                if if_due and not self._checkpoint_due():
                    return None
            self._last_checkpoint = time.monotonic()
            if current.last_feedback_id >= self.applied_id and not force:
                self._unsaved = 0
                return None  # nothing to add to the current version
            state, last_id, unsaved = self.model.state(), self.applied_id, self._unsaved
        accuracy = self.holdout_accuracy(state, holdout) if holdout is not None else None
        threshold = None
        if accuracy is not None:
            last_good = current.holdout_accuracy
            if last_good is None:
                last_good = self.holdout_accuracy(self.store.load(current.name)[1], holdout)
            # Scored on the holdout given (not None, as accuracy is not): a float.
            assert last_good is not None
            threshold = (max(last_good, self.base_accuracy(holdout) or 0.0)
                         - self.config.guard_margin)
        # threshold is set only when accuracy is not None: the second test is for mypy.
        if threshold is not None and accuracy is not None and accuracy < threshold:
            reason = (f"guard: holdout accuracy {accuracy:.4f} < {threshold:.4f} "
                      f"(last good {current.name}, margin {self.config.guard_margin})")
            with self.feedback.exclusive():
                n = self.feedback.quarantine(current.last_feedback_id, last_id, reason)
            log.warning("quarantined %d verdicts: %s", n, reason)
            with self._lock:
                self._reload()  # from the last good version, before anyone predicts
            return GuardResult(None, n, accuracy, threshold)
        info = self.store.write(state, current.name, current.last_feedback_id + 1, last_id,
                                accuracy)
        self.store.prune(self.config.keep_versions)
        with self._lock:
            # Nothing reloaded meanwhile: only a quarantine changes the generation,
            # and quarantines need the store's lock, which this checkpoint holds.
            # A request thread may already have taken the new version as this
            # model's (_adopt_published), counting what is unsaved after it.
            if self.version.name != info.name:
                self.version = info
                self._unsaved -= unsaved
        return GuardResult(info, 0, accuracy, threshold)

    def rollback(self, name: str) -> int:
        """Make ``name`` (an ancestor of the current version) current again.

        The verdicts applied after it are quarantined with the reason, so the
        model is still the base plus the accepted log; returns how many.
        """
        with self.store.lock, self._lock:
            with self.feedback.exclusive():
                chain = self.store.chain()
                if name not in chain:
                    raise ValueError(f"{name} is not the current version or one of its "
                                     f"ancestors: {', '.join(chain)}")
                if self.store.has_state(name):
                    info, _ = self.store.load(name)
                else:
                    info = self.store.info(name)
                    self.store.restore(name, self.rebuild(info.last_feedback_id).state())
                n = self.feedback.quarantine(info.last_feedback_id, None,
                                             f"operator rollback to {name}")
                self.store.set_current(name)
                self.generation = -1
            self._reload()
        return n

    def rebuild(self, upto_id: int | None = None) -> ServedModel:
        """The base model plus the accepted log (up to ``upto_id``), replayed from scratch.

        Up to a version's last id on the current chain, that is the version:
        quarantines after it only ever cover later ids, and released verdicts
        come back with new ones (how a rollback restores a pruned state).
        """
        model = self.base.clone(self.store.base_state)
        for _ in _learn(model, self.feedback.accepted_after(0, upto_id), []):
            pass
        return model

    def start_background_checkpoints(self) -> None:
        """Checkpoint every few seconds when verdicts are waiting, even with no traffic.

        A server's job (:mod:`sentiment.serving`), not the app factory's: a
        thread started by building an app would outlive it. :meth:`close` stops it.
        """
        if self._timer is None:
            interval = max(1.0, min(self.config.checkpoint_seconds, 10.0))
            self._timer = PeriodicThread(self._sync_in_background, interval,
                                         "checkpoint-timer")
            self._timer.start()

    def start_log_upkeep(self) -> None:
        """Take the log's housekeeping off the requests: a thread does it every
        :data:`LOG_UPKEEP_SECONDS` (for SQLite, copying the write-ahead log into the
        database, which a commit would otherwise do while its request waits).
        A server's job, like :meth:`start_background_checkpoints`."""
        if self._upkeep is None:
            upkeep = self.feedback.hand_over_upkeep()
            if upkeep is not None:
                self._upkeep = PeriodicThread(upkeep, LOG_UPKEEP_SECONDS, "log-upkeep")
                self._upkeep.start()

    def start_following(self) -> None:
        """Learn other hosts' verdicts as they commit, with no request to ask for them.

        Only for a log that announces commits (PostgreSQL's LISTEN/NOTIFY): a
        thread waits for the announcement, or :data:`FOLLOW_POLL` seconds if
        none comes (one may be lost while the database restarts), then syncs.
        An SQLite log's processes share one host and catch up at their next
        request or checkpoint tick.
        """
        if self._follower is None and self.feedback.notifies:
            self._stop_following.clear()
            self._follower = threading.Thread(target=self._follow, name="log-follower",
                                              daemon=True)
            self._follower.start()

    def _follow(self) -> None:
        while not self._stop_following.is_set():
            self.feedback.wait_for_change(FOLLOW_POLL)
            if self._stop_following.is_set():
                return
            try:
                self.sync()
            except Exception:  # keep following; the next wake-up retries
                log.exception("following the feedback log failed")

    def stop_threads(self) -> None:
        """Stop the background checkpoints, the log's upkeep and the follower, and wait
        for the holdout's preparation."""
        if self._timer is not None:
            self._timer.stop()
        if self._upkeep is not None:
            self._upkeep.stop()
        if self._follower is not None:
            self._stop_following.set()
            self._follower.join()
            self._follower = None
        self.holdout.close()

    def close(self) -> None:
        """Stop this learner's threads, then save what is unsaved, so the next start
        replays nothing."""
        self.stop_threads()
        if self._unsaved:
            self.checkpoint()

    def status(self) -> dict[str, Any]:
        """What /api/health reports, after catching up with the log.

        ``model_digest`` is a sha256 of the exact model state: processes that
        followed the same log show the same digest. The state is copied under
        the lock, so the digest, version and verdict id describe one and the
        same model; hashing its 8 MB (~5 ms) happens outside, and only once
        per model: a given (generation, version, last verdict applied) is one
        state, so polling an idle app costs next to nothing.
        """
        self.sync()
        with self._lock:
            key = (self.generation, self.version.name, self.applied_id)
            known_key, digest = self._digest
            state = self.model.state() if known_key != key else None
            status = {
                "model_version": self.model_version,
                "version": self.version.name,
                "applied_feedback_id": self.applied_id,
                "unsaved_verdicts": self._unsaved,
                "base": self.base.base_id,
                "preset": self.base.manifest.get("preset"),
            }
        if state is not None:
            digest = state.digest()
            self._digest = (key, digest)
        # Sorted outside the lock, which learning needs (copying the deque holds the GIL).
        return {"model_digest": digest, **status, "follow_lag_ms": self.follow_lag()}


__all__ = ["BASE", "GuardResult", "Learner", "LearnerConfig"]
