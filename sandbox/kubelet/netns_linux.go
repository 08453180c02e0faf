package kubelet

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// procAttr puts a container's process in a process group of its own (signalled as a whole),
// killed if the node agent dies first.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// errNotPermitted explains what a node agent not running as root lacks.
var errNotPermitted = errors.New("the sandbox node runs each pod in a network namespace of its own, which needs root (CAP_SYS_ADMIN)")

// newNetns creates a network namespace with its loopback interface up and returns a file
// descriptor that holds it (the namespace lives as long as the descriptor: no pause process, no
// mount), the pod's network as a CNI-less container runtime would give it.
func newNetns() (int, error) {
	var fd int
	err := onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return err
		}
		var err error
		if fd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return err
		}
		if err := loopbackUp(); err != nil {
			_ = unix.Close(fd)
			return fmt.Errorf("bringing the pod's loopback interface up: %w", err)
		}
		return nil
	})
	if errors.Is(err, unix.EPERM) {
		err = errNotPermitted
	}
	return fd, err
}

// inNetns runs f on an OS thread that has entered the network namespace ns, so that the sockets
// f opens and the processes it starts are the pod's (what kubelet's port forwarding does with
// nsenter).
func inNetns(ns int, f func() error) error {
	return onThread(func() error {
		if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("entering the pod's network namespace: %w", err)
		}
		return f()
	})
}

// onThread runs f on a locked OS thread and returns the thread to the node's network namespace
// afterwards; a thread that cannot return is retired (its goroutine ends locked).
func onThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer func() { _ = unix.Close(self) }()
		err = f()
		if unix.Setns(self, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// loopbackUp brings the loopback interface of the current thread's network namespace up (a
// new namespace has it down).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer func() { _ = unix.Close(fd) }()
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
