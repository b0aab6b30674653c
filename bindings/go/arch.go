package dashnas

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"runtime"
	"sync"
)

// Arch is a searched architecture with its hyperparameters (dash_arch).
// It is immutable: it may be shared between goroutines, and every use runs
// at once with the others; only Close waits for them.
type Arch struct {
	// mu guards p against Close only: every use shares it, Close holds it alone.
	mu sync.RWMutex
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
	p, unlock, err := task.read("PlainArch")
	if err != nil {
		return nil, err
	}
	defer unlock()
	var out *C.dash_arch
	var msg *C.char
	if err := check(C.dashgo_arch_plain(p, &out, &msg), msg); err != nil {
		return nil, err
	}
	return newArch(out), nil
}

// read holds the arch open for one use; the caller unlocks with the returned
// function (deferring it keeps a reachable, so the finalizer waits).
func (a *Arch) read(op string) (*C.dash_arch, func(), error) {
	if a == nil {
		return nil, nil, errorf(InvalidArgument, "%s: the arch is nil", op)
	}
	a.mu.RLock()
	if a.p == nil {
		a.mu.RUnlock()
		return nil, nil, closedError(op, "arch")
	}
	return a.p, a.mu.RUnlock, nil
}

// JSON is the architecture and its hyperparameters, as ArchFromJSON reads them.
func (a *Arch) JSON() (string, error) {
	p, unlock, err := a.read("Arch.JSON")
	if err != nil {
		return "", err
	}
	defer unlock()
	var out, msg *C.char
	if err := check(C.dashgo_arch_to_json(p, &out, &msg), msg); err != nil {
		return "", err
	}
	return takeString(out), nil
}

// Info is what the search that made the architecture recorded:
// {"architecture", "report": {"search"}} ("report" is {} for a plain or
// parsed one). ReportHTML renders it.
func (a *Arch) Info() (string, error) {
	p, unlock, err := a.read("Arch.Info")
	if err != nil {
		return "", err
	}
	defer unlock()
	var out, msg *C.char
	if err := check(C.dashgo_arch_info(p, &out, &msg), msg); err != nil {
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
