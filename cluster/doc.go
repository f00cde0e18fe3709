// Package cluster keeps the state that the nodes of a zonenet cluster
// share, in etcd: which nodes are alive (and where their VXLAN endpoints
// are), which node owns which address block of each zone, and each
// network's policy. The node daemon registers its node, claims blocks so
// that a container start only touches the node's local store, and watches
// the rest to program the overlay and the ACLs.
//
// # Key layout
//
// Under a configurable prefix (default /zonenet/), values are JSON records
// with a version field {"v":1,...}:
//
//	nodes/<node>                      {underlay, vtepMAC, registered}, attached to the node's lease
//	gone/<node>                       {since}: when a block owner was first seen unregistered
//	subnets/<network>/<subnet>        {zone, blockBits}: fixed by the first claim in the subnet
//	blocks/<network>/<block>          {zone, node, claimed}: the block's owner
//	policy/<network>                  the policy document, as the operator wrote it
//
// <subnet> and <block> are prefixes in canonical form (10.0.1.64/26,
// fd00:0:3::/120), so a block has one key only. Names are letters, digits,
// '.', '-' and '_', never a '/'.
//
// # Why blocks cannot be owned twice
//
// Blocks are keyed by network, not by zone: the zones of a network share
// one address space. A subnet record fixes the block size of its subnet
// and is written only if no subnet record of the network changed since it
// was checked for overlaps; within a subnet every block then has the same
// size and alignment, and a claim is a transaction that puts the block's
// key only if it does not exist (create revision 0) and the subnet record
// is unchanged. Releasing or reclaiming a block is a transaction
// conditioned on the record being the one read (mod revision), so a block
// that changed hands meanwhile is never deleted.
//
// # Liveness
//
// A node's record lives on a lease of NodeTTL that the Store keeps alive;
// a node that dies disappears from nodes/ within the TTL, which every
// watcher sees at once. Its blocks stay a grace period longer (ReclaimDead)
// so that a node that only restarts keeps its containers' addresses.
//
// Every call is bounded by the request timeout: with etcd down, calls fail
// with context.DeadlineExceeded instead of hanging, the registration keeps
// retrying in the background, and watches resume (or list again) when etcd
// is back.
package cluster
