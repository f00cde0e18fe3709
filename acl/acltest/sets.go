package acltest

import (
	"fmt"
	"sort"
	"sync"

	"github.com/zonenet/zonenet/acl"
)

// MemberSets is an in-memory acl.MemberSets. References are not tracked by the fake:
// Refs sets them by hand.
type MemberSets struct {
	// Fake, when set, learns of the sets made and destroyed here, so its
	// rules may name them.
	Fake *Fake

	mu   sync.Mutex
	sets map[string]*memberSet
}

type memberSet struct {
	spec    acl.SetSpec
	refs    int
	members map[string]acl.SetEntry
}

// Ensure implements acl.MemberSets.
func (s *MemberSets) Ensure(spec acl.SetSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sets == nil {
		s.sets = map[string]*memberSet{}
	}
	if have, ok := s.sets[spec.Name]; ok {
		if have.spec.Type != spec.Type {
			return fmt.Errorf("ipset %s exists with type %s", spec.Name, have.spec.Type)
		}
		return nil
	}
	s.sets[spec.Name] = &memberSet{spec: spec, members: map[string]acl.SetEntry{}}
	if s.Fake != nil {
		s.Fake.DeclareSet(spec.Name)
	}
	return nil
}

// Destroy implements acl.MemberSets.
func (s *MemberSets) Destroy(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sets, name)
	if s.Fake != nil {
		s.Fake.ForgetSet(name)
	}
	return nil
}

// Add implements acl.MemberSets.
func (s *MemberSets) Add(name string, e acl.SetEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	set, ok := s.sets[name]
	if !ok {
		return fmt.Errorf("ipset %s does not exist", name)
	}
	set.members[e.Addr.String()] = e
	return nil
}

// Del implements acl.MemberSets.
func (s *MemberSets) Del(name string, e acl.SetEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if set, ok := s.sets[name]; ok {
		delete(set.members, e.Addr.String())
	}
	return nil
}

// Info implements acl.MemberSets.
func (s *MemberSets) Info(name string) (acl.SetInfo, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set, ok := s.sets[name]
	if !ok {
		return acl.SetInfo{}, false, nil
	}
	info := acl.SetInfo{Type: set.spec.Type, References: set.refs}
	keys := make([]string, 0, len(set.members))
	for k := range set.members {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		info.Entries = append(info.Entries, set.members[k])
	}
	return info, true, nil
}

// Refs sets the reference count the fake reports for a set.
func (s *MemberSets) Refs(name string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if set, ok := s.sets[name]; ok {
		set.refs = n
	}
}

// Names are the sets that exist, sorted.
func (s *MemberSets) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n := range s.sets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
