package roster

import (
	"slices"
	"testing"
)

type item struct {
	Slot
	id int
}

// walk reads r in chunks of n, as a sweep does.
func walk(r *Roster[*item], n int) []int {
	var ids []int
	var buf []*item
	for from := 0; ; from += len(buf) {
		if buf = r.Chunk(buf[:0], from, n); len(buf) == 0 {
			return ids
		}
		for _, it := range buf {
			ids = append(ids, it.id)
		}
	}
}

// fill adds n items, with ids 0 to n-1, to a new roster.
func fill(n int) (*Roster[*item], []*item) {
	r := &Roster[*item]{}
	items := make([]*item, n)
	for i := range items {
		items[i] = &item{id: i}
		r.Add(items[i])
	}
	return r, items
}

// TestRoster: members added and removed in any order are each walked once,
// in chunks of any size; adding a member twice, removing one twice, or
// one never added, changes nothing.
func TestRoster(t *testing.T) {
	r, items := fill(10)
	for _, i := range []int{0, 9, 4, 4} { // first, last, middle, again
		r.Remove(items[i])
	}
	r.Remove(&item{id: 99})
	want := []int{1, 2, 3, 5, 6, 7, 8}
	for _, n := range []int{1, 3, 7, 100} {
		got := walk(r, n)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("chunks of %d: walked %v, want %v", n, got, want)
		}
	}
	if r.Len() != len(want) {
		t.Errorf("Len() = %d, want %d", r.Len(), len(want))
	}
	r.Add(items[4]) // a removed member may join again
	r.Add(items[4]) // once
	r.Add(items[1])
	if got := walk(r, 2); len(got) != len(want)+1 {
		t.Errorf("after adding back: walked %v", got)
	}
}

// TestRosterShrinks: a roster that held thousands and kept a few gives
// the large slice back.
func TestRosterShrinks(t *testing.T) {
	r, items := fill(8192)
	big := cap(r.s)
	for _, it := range items[10:] {
		r.Remove(it)
	}
	if cap(r.s) >= big/4 {
		t.Errorf("capacity %d after keeping 10 of %d, want under %d", cap(r.s), len(items), big/4)
	}
	got := walk(r, 4)
	slices.Sort(got)
	if !slices.Equal(got, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Errorf("walked %v after shrinking", got)
	}
}
