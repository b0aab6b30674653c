package dashnas

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"runtime"
	"sync"
)

// Arch is a searched architecture with its hyperparameters (dash_arch).
// Its methods run one at a time; it may be shared between goroutines.
type Arch struct {
	mu sync.Mutex
	p  *C.dash_arch
}

func newArch(p *C.dash_arch) *Arch {
	a := &Arch{p: p}
	runtime.SetFinalizer(a, (*Arch).Close)
	return a
}

// ArchFromJSON reads an architecture written by Arch.JSON:
// {"backbone": ..., "layers": [{"kernel_size": k, "dilation": d}, ...],
// "hyperparameters": {"lr", "momentum", "weight_decay", "dropout"}}
// ("hyperparameters" may be left out: defaults then).
func ArchFromJSON(text string) (*Arch, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	s := cString(text)
	defer freeCString(s)
	var p *C.dash_arch
	var msg *C.char
	if err := check(C.dashgo_arch_from_json(s, &p, &msg), msg); err != nil {
		return nil, err
	}
	return newArch(p), nil
}

// PlainArch is the plain backbone for a task (k=3, d=1 everywhere): the
// baseline DASH beats.
func PlainArch(task *Task) (*Arch, error) {
	p, err := task.lock("PlainArch")
	if err != nil {
		return nil, err
	}
	defer task.mu.Unlock()
	var out *C.dash_arch
	var msg *C.char
	if err := check(C.dashgo_arch_plain(p, &out, &msg), msg); err != nil {
		return nil, err
	}
	return newArch(out), nil
}

func (a *Arch) lock(op string) (*C.dash_arch, error) {
	if a == nil {
		return nil, errorf(InvalidArgument, "%s: the arch is nil", op)
	}
	a.mu.Lock()
	if a.p == nil {
		a.mu.Unlock()
		return nil, closedError(op, "arch")
	}
	return a.p, nil
}

// JSON is the architecture and its hyperparameters, as ArchFromJSON reads them.
func (a *Arch) JSON() (string, error) {
	p, err := a.lock("Arch.JSON")
	if err != nil {
		return "", err
	}
	defer a.mu.Unlock()
	var out, msg *C.char
	if err := check(C.dashgo_arch_to_json(p, &out, &msg), msg); err != nil {
		return "", err
	}
	return takeString(out), nil
}

// Close frees the architecture. It is safe to call more than once.
func (a *Arch) Close() error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.p != nil {
		C.dash_arch_free(a.p)
		a.p = nil
	}
	runtime.SetFinalizer(a, nil)
	return nil
}
