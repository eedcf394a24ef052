"""Leader election among controllers, with every leader write fenced in etcd.

Several controllers run; one leads. The leader holds ``<prefix>/leader`` (a LeaderRecord
bound to its etcd lease) and renews the lease every TTL/3; standbys watch the key and
campaign as soon as it is deleted (lease expiry, resignation), and every TTL/3 as a safety
net.

Why fencing. client-go's leader election (k8s.io/client-go/tools/leaderelection) decides
leadership from timestamps observed locally; its package documentation states that it "does
not guarantee that only one client is acting as a leader (a.k.a. fencing)". A leader that is
paused (GC, SIGSTOP, a VM migration) or partitioned right after checking "am I still
leader?" wakes up believing it still leads and writes, while a new leader already acts.
Here the local timer is only the fast path. The real
guard is etcd itself: a campaign creates the leader key, and the revision that created it
(its create_revision, unique for ever, since revisions only grow) is this term's *fence*.
Every controller write is ONE transaction that also compares the leader key's
create_revision with the fence. Once the key has expired or been deleted, no key can ever
have that create_revision again, so every write of the former leader fails inside etcd,
however late it arrives.

Why these timings (ElectionTiming):

* renew every TTL/3: one renewal may fail and the next still lands before the lease ends.
* local deadline = (clock reading taken *before* the last successful refresh was sent)
  + TTL - margin. etcd restarts the lease's countdown when it receives the refresh, which
  is after that reading, so etcd cannot expire the lease (and nobody else can be elected)
  before the local deadline + margin. After an etcd restart or leader change etcd extends
  lease TTLs, never shortens them.
* margin = TTL/5 by default (2 s for the default 10 s). Safety does not depend on it (the
  fence does that), so it only has to make the common case clean: the former leader stops
  acting, and stops *claiming* leadership on its dashboard, logs and metrics, before a
  successor can exist, even across a scheduling or GC hiccup of up to the margin, plus
  clock-rate differences (parts per million). It must stay below TTL/3 so that a leader
  survives one failed renewal: renewals at TTL/3 and 2*TTL/3 both come before TTL - margin.

Threads. renew() is called by the owner's scheduler; the watch calls back on its own
thread; fenced_txn() and is_leader are called from the controller's loops. One lock
(_ops) serializes the calls that talk to etcd about leadership (campaign, renew, resign);
another (_state) guards the current term only briefly, never across a network call, so
is_leader never waits for etcd. on_elected / on_lost run on whichever thread made the
change and must be quick (set a flag, wake a loop).

Where each part lives (one job per module; Election assembles them):

* term.py        pure: ElectionTiming, Term, NotLeader and the LOST_* reasons
* fencing.py     the current term, is_leader, fenced_txn, and the term's transitions
* leader_key.py  who leads (leader()), checking and repairing the leader key, orphans
* watch.py       the leader key's watch: campaign when it goes, notice hand edits
* campaign.py    start / campaign / renew / resign: leases, adoption, revocation
"""

from __future__ import annotations

from tfleet.controller.election.campaign import Campaign
from tfleet.controller.election.fencing import FencedLeadership
from tfleet.controller.election.leader_key import LeaderKeyCare, record_bytes
from tfleet.controller.election.term import (
    DEFAULT_TTL,
    LOST_DEADLINE,
    LOST_FENCE,
    LOST_KEY,
    LOST_LEASE,
    MIN_TTL,
    ElectionTiming,
    NotLeader,
    Term,
)
from tfleet.controller.election.watch import LeaderWatch


class Election(Campaign):
    """Campaign for, hold, renew and give up ``<prefix>/leader``; fence every leader write.

    Lifecycle: start() (watch the key, campaign once), then renew() every
    timing.renew_interval with timing.renew_jitter from the owner's scheduler, write with
    fenced_txn(), and resign() at shutdown. renew(), start() and resign() never raise.
    """

    def __repr__(self) -> str:
        return f"Election({self.candidate_id!r}, {self.key!r}, term={self._term!r})"


__all__ = [
    "DEFAULT_TTL",
    "LOST_DEADLINE",
    "LOST_FENCE",
    "LOST_KEY",
    "LOST_LEASE",
    "MIN_TTL",
    "Campaign",
    "Election",
    "ElectionTiming",
    "FencedLeadership",
    "LeaderKeyCare",
    "LeaderWatch",
    "NotLeader",
    "Term",
    "record_bytes",
]
