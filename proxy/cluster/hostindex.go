package cluster

import (
	"iter"
	"slices"

	"github.com/sightline-proxy/sightline/proxy/host"
)

// smallHosts is how many hosts a cluster keeps in a slice before it indexes
// them by address in a map: most clusters have a handful, and a map of two
// costs some 300 bytes, a slice 16.
const smallHosts = 8

// hostIndex is a cluster's hosts by address. The zero value is empty and
// ready to use; the cluster's lock guards it.
type hostIndex struct {
	few []*host.Host
	m   map[string]*host.Host // once more than smallHosts
}

func (x *hostIndex) get(addr string) (*host.Host, bool) {
	if x.m != nil {
		h, ok := x.m[addr]
		return h, ok
	}
	for _, h := range x.few {
		if h.Address == addr {
			return h, true
		}
	}
	return nil, false
}

// set makes h the host of its address.
func (x *hostIndex) set(h *host.Host) {
	if x.m != nil {
		x.m[h.Address] = h
		return
	}
	for i, o := range x.few {
		if o.Address == h.Address {
			x.few[i] = h
			return
		}
	}
	if len(x.few) < smallHosts {
		x.few = append(x.few, h)
		return
	}
	x.m = make(map[string]*host.Host, 2*smallHosts)
	for _, o := range x.few {
		x.m[o.Address] = o
	}
	x.m[h.Address] = h
	x.few = nil
}

func (x *hostIndex) del(addr string) {
	if x.m != nil {
		delete(x.m, addr)
		return
	}
	x.few = slices.DeleteFunc(x.few, func(h *host.Host) bool { return h.Address == addr })
}

func (x *hostIndex) len() int {
	if x.m != nil {
		return len(x.m)
	}
	return len(x.few)
}

// all yields every host; the loop may delete the one it is given.
func (x *hostIndex) all() iter.Seq[*host.Host] {
	return func(yield func(*host.Host) bool) {
		if x.m != nil {
			for _, h := range x.m {
				if !yield(h) {
					return
				}
			}
			return
		}
		for _, h := range slices.Clone(x.few) {
			if !yield(h) {
				return
			}
		}
	}
}
