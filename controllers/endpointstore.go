package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/go-logr/logr"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	discoveryclient "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/crossgate-io/crossgate/translator"
)

// EndpointSliceStore is the informer of the cluster's EndpointSlices, kept in the translator's compact
// form (translator.EndpointSlice) rather than as API objects: a client-go Reflector lists and
// watches them (relisting, resuming and backing off as every informer does) into this store,
// which keeps only what the translator reads (about a third of an object's memory at 10
// endpoints a slice: B6). EndpointSlices are by far the most numerous objects a controller
// watches; nothing else reads them, so the manager's cache does not hold them.
//
// A stored slice is never modified: a new version replaces it. So a translation may keep
// pointers to the slices it read.
type EndpointSliceStore struct {
	mu     sync.RWMutex
	slices map[sliceKey]*translator.EndpointSlice
	synced chan struct{} // closed by the first Replace (the first list)
	once   sync.Once
	// changed is told of each add, update and delete of a slice, after the store has it;
	// relisted of each list after the first (the watch was lost: anything may have changed).
	changed  func(s *translator.EndpointSlice, deleted bool)
	relisted func()
}

// NewEndpointSliceStore returns an empty store; Run fills it.
func NewEndpointSliceStore() *EndpointSliceStore {
	return &EndpointSliceStore{slices: map[sliceKey]*translator.EndpointSlice{}, synced: make(chan struct{})}
}

// sliceKey is a slice's namespace and name, the strings the slice holds (no key of its own).
type sliceKey struct{ namespace, name string }

func keyOf(s *translator.EndpointSlice) sliceKey { return sliceKey{s.Namespace, s.Name} }

// Run lists and watches the EndpointSlices of every namespace through cfg until ctx ends.
func (s *EndpointSliceStore) Run(ctx context.Context, cfg *rest.Config, log logr.Logger) error {
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = runtime.ContentTypeProtobuf // the largest lists a controller reads: the compact encoding
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	c, err := discoveryclient.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("a client of EndpointSlices: %w", err)
	}
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.EndpointSlices(metav1.NamespaceAll).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.EndpointSlices(metav1.NamespaceAll).Watch(ctx, o)
		},
	}
	r := toolscache.NewReflectorWithOptions(lw, &discoveryv1.EndpointSlice{}, s, toolscache.ReflectorOptions{Name: "endpointslices", Logger: &log})
	r.RunWithContext(ctx)
	return nil
}

// WaitSynced waits for the first list, or for ctx to end (false).
func (s *EndpointSliceStore) WaitSynced(ctx context.Context) bool {
	select {
	case <-s.synced:
		return true
	case <-ctx.Done():
		return false
	}
}

// List returns every slice, in the order of namespace and name. The values share their ports
// and endpoints with the store, which never modifies them.
func (s *EndpointSliceStore) List() []translator.EndpointSlice {
	s.mu.RLock()
	out := make([]translator.EndpointSlice, 0, len(s.slices))
	for _, v := range s.slices {
		out = append(out, *v)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b translator.EndpointSlice) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// Len is the number of slices held.
func (s *EndpointSliceStore) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.slices)
}

// The Reflector's store (toolscache.ReflectorStore).
var _ toolscache.ReflectorStore = (*EndpointSliceStore)(nil)

func (s *EndpointSliceStore) Add(obj any) error    { return s.set(obj, false) }
func (s *EndpointSliceStore) Update(obj any) error { return s.set(obj, false) }
func (s *EndpointSliceStore) Delete(obj any) error { return s.set(obj, true) }
func (s *EndpointSliceStore) Resync() error        { return nil }

func (s *EndpointSliceStore) set(obj any, deleted bool) error {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return fmt.Errorf("the EndpointSlice store got a %T", obj)
	}
	c := translator.CompactEndpointSlice(o)
	s.mu.Lock()
	if deleted {
		delete(s.slices, keyOf(c))
	} else {
		s.slices[keyOf(c)] = c
	}
	s.mu.Unlock()
	if s.changed != nil {
		s.changed(c, deleted)
	}
	return nil
}

func (s *EndpointSliceStore) Replace(list []any, _ string) error {
	m := make(map[sliceKey]*translator.EndpointSlice, len(list))
	for _, obj := range list {
		o, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			return fmt.Errorf("the EndpointSlice store got a %T", obj)
		}
		c := translator.CompactEndpointSlice(o)
		m[keyOf(c)] = c
	}
	s.mu.Lock()
	s.slices = m
	s.mu.Unlock()
	first := false
	s.once.Do(func() { first = true; close(s.synced) })
	if !first && s.relisted != nil {
		s.relisted()
	}
	return nil
}
