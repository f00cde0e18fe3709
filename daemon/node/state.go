package node

import (
	"log/slog"
	"sync"
	"time"

	"github.com/zonenet/zonenet/cluster"
)

// state is what the daemon knows about itself, for /healthz, /metrics and
// for logging each change of a condition once rather than on every retry.
type state struct {
	log *slog.Logger
	now func() time.Time

	mu sync.Mutex
	// etcd: whether the last contact succeeded, since when, and why not.
	etcdKnown bool
	etcdUp    bool
	etcdSince time.Time
	etcdErr   string
	// registered: this node's record was seen in the node list.
	registered bool

	dataplaneErr string // last Ensure or guard failure; "" when fine
	overlayMTU   int

	peers         int
	ownBlocks     []cluster.Block
	clusterBlocks map[zoneKey]int // blocks of live and dead nodes, per zone

	lastReconcile    time.Time
	lastReconcileErr string
	reconciles       uint64
	reconcileErrors  uint64
	changes          uint64
	reclaimed        uint64

	// The cluster's policy per network: the etcd revision of the document
	// the node runs, and why the last install failed ("" when it did not).
	policyRev      map[string]int64
	policyErr      map[string]string
	policyInstalls uint64
	policyErrors   uint64
	policyRefused  uint64
}

type zoneKey struct{ network, zone string }

func newState(log *slog.Logger) *state {
	return &state{log: log, now: time.Now, clusterBlocks: map[zoneKey]int{},
		policyRev: map[string]int64{}, policyErr: map[string]string{}}
}

// etcd records the outcome of a contact with etcd and logs when the
// condition changed: once when it becomes unreachable, once when it is
// back, however many retries happen in between.
func (s *state) etcd(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	up := err == nil
	if s.etcdKnown && s.etcdUp == up {
		if !up {
			s.etcdErr = err.Error()
		}
		return
	}
	was := s.etcdKnown
	s.etcdKnown, s.etcdUp, s.etcdSince = true, up, s.now()
	switch {
	case up:
		s.etcdErr = ""
		if was {
			s.log.Info("etcd reachable again; the overlay follows the cluster again")
		} else {
			s.log.Info("etcd reachable")
		}
	default:
		s.etcdErr = err.Error()
		s.log.Warn("etcd unreachable; keeping the overlay as it is and retrying", "err", err)
	}
}

// setRegistered records whether this node's record is in the node list,
// logging a change.
func (s *state) setRegistered(ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.registered == ok {
		return
	}
	s.registered = ok
	if ok {
		s.log.Info("node registered in the cluster")
	} else {
		s.log.Warn("this node's registration is gone (lease expired); registering again")
	}
}

// dataplane records the outcome of ensuring the device and the guard,
// logging a change.
func (s *state) dataplane(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg == s.dataplaneErr {
		return
	}
	if err != nil {
		s.log.Error("overlay device or VXLAN guard", "err", err)
	} else {
		s.log.Info("overlay device and VXLAN guard repaired")
	}
	s.dataplaneErr = msg
}

// reconciled records one Reconcile.
func (s *state) reconciled(peers int, changes int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reconciles++
	s.changes += uint64(changes)
	s.peers = peers
	s.lastReconcile = s.now()
	s.lastReconcileErr = ""
	if err != nil {
		s.reconcileErrors++
		s.lastReconcileErr = err.Error()
	}
}

func (s *state) setBlocks(own []cluster.Block, all map[blockID]cluster.Block, served map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ownBlocks = own
	s.clusterBlocks = map[zoneKey]int{}
	for _, b := range all {
		if served[b.Network] {
			s.clusterBlocks[zoneKey{b.Network, b.Zone}]++
		}
	}
}

func (s *state) addReclaimed(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reclaimed += uint64(n)
}

func (s *state) setMTU(mtu int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.overlayMTU = mtu
}

// healthy says whether the node does its job: etcd answers, the node is
// registered, the overlay was programmed at least once from a complete
// listing, and the device, the guard and the last Reconcile are fine.
// Each failing condition is returned for the body of /healthz.
func (s *state) healthy() (bool, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var why []string
	switch {
	case !s.etcdKnown:
		why = append(why, "etcd: not contacted yet")
	case !s.etcdUp:
		why = append(why, "etcd: unreachable since "+s.etcdSince.UTC().Format(time.RFC3339)+": "+s.etcdErr)
	}
	if !s.registered {
		why = append(why, "node: not registered")
	}
	if s.reconciles == 0 {
		why = append(why, "overlay: not programmed from a complete view of the cluster yet")
	}
	if s.dataplaneErr != "" {
		why = append(why, "dataplane: "+s.dataplaneErr)
	}
	if s.lastReconcileErr != "" {
		why = append(why, "reconcile: "+s.lastReconcileErr)
	}
	for _, n := range sortedKeys(s.policyErr) {
		why = append(why, "policy of network "+n+": "+s.policyErr[n])
	}
	return len(why) == 0, why
}

// policyInPlace records that the node runs revision rev of a network's
// policy without installing it (the file already held it).
func (s *state) policyInPlace(network string, rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policyRev[network] = rev
	delete(s.policyErr, network)
}

func (s *state) policyInstalled(network string, rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policyRev[network] = rev
	delete(s.policyErr, network)
	s.policyInstalls++
}

func (s *state) policyFailed(network string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policyErr[network] = "install failed: " + err.Error()
	s.policyErrors++
}

func (s *state) policyRefusedOne() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policyRefused++
}
