package controllers

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
)

// Supervisor runs a member's controllers so that xDS outlives leadership: when the manager
// loses its leadership (its API server unreachable past the renew deadline), controller-runtime
// stops every runnable and the manager's Start returns. The xDS cache, which the manager's
// Publisher writes and the xDS server reads, is not the manager's: it keeps serving the last
// state while a new manager, built by Build, campaigns again and, once its informers sync,
// publishes afresh. Only the writers (status, Deployments, Secrets, the federation) wait for
// leadership; every replica publishes xDS.
type Supervisor struct {
	// Build makes a fresh member (a manager cannot be started twice).
	Build func() (*Member, error)
	Log   *slog.Logger

	current   atomic.Pointer[Member]
	published atomic.Bool
	restarts  atomic.Int32
}

// errLeadershipLost is controller-runtime's error from Manager.Start when leadership is lost
// (pkg/manager/internal.go, OnStoppedLeading): it has no exported value to compare with.
const errLeadershipLost = "leader election lost"

// Current is the member running now (nil before Run builds one).
func (s *Supervisor) Current() *Member { return s.current.Load() }

// Restarts counts the managers built after a loss of leadership.
func (s *Supervisor) Restarts() int { return int(s.restarts.Load()) }

// Ready reports whether xDS has been published at least once: the cache then serves a whole
// state, the last one, through any restart.
func (s *Supervisor) Ready() bool {
	if s.published.Load() {
		return true
	}
	if m := s.current.Load(); m != nil && m.Publisher.Ready() {
		s.published.Store(true)
		return true
	}
	return false
}

// Run builds and starts members until ctx ends (nil) or a member fails for another reason than
// lost leadership (that error).
func (s *Supervisor) Run(ctx context.Context) error {
	log := s.Log
	if log == nil {
		log = slog.Default()
	}
	for {
		m := s.current.Load()
		if m == nil {
			var err error
			if m, err = s.Build(); err != nil {
				return err
			}
			s.current.Store(m)
		}
		err := m.Manager.Start(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil || err.Error() != errLeadershipLost {
			if err == nil {
				err = errors.New("the controllers stopped")
			}
			return err
		}
		s.Ready() // remember a publish of the member that just stopped
		log.Warn("leadership lost (is the API server reachable?): xDS keeps serving the last state, the writers stop; campaigning again")
		s.restarts.Add(1)
		next, err := s.Build()
		if err != nil {
			return err
		}
		s.current.Store(next)
	}
}
