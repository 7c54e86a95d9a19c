package speaker

import "container/list"

// maxRememberedProblems bounds how many objects' last problem the speaker
// remembers to de-duplicate its Events. Objects come and go (a deleted
// Service's entry would otherwise stay for the life of the process), so
// the least recently reported are forgotten first; a forgotten standing
// problem is reported once more, which the Event recorder's own spam
// filter absorbs.
const maxRememberedProblems = 4096

// problemMemo remembers the last problem reported for each of at most max
// objects, the least recently reported forgotten first. It is not safe for
// concurrent use (eventReporter holds a lock).
type problemMemo struct {
	max   int
	order *list.List // of *memoEntry, most recently reported first
	byObj map[string]*list.Element
}

type memoEntry struct {
	object, problem string
}

func newProblemMemo(max int) *problemMemo {
	return &problemMemo{max: max, order: list.New(), byObj: map[string]*list.Element{}}
}

// changed records problem as object's last one and reports whether it
// differs from the one remembered (an object not remembered has none).
func (m *problemMemo) changed(object, problem string) bool {
	if el, ok := m.byObj[object]; ok {
		m.order.MoveToFront(el)
		e := el.Value.(*memoEntry)
		if e.problem == problem {
			return false
		}
		e.problem = problem
		return true
	}
	m.byObj[object] = m.order.PushFront(&memoEntry{object: object, problem: problem})
	for m.order.Len() > m.max {
		oldest := m.order.Back()
		m.order.Remove(oldest)
		delete(m.byObj, oldest.Value.(*memoEntry).object)
	}
	return true
}

// len returns how many objects are remembered.
func (m *problemMemo) len() int { return m.order.Len() }
