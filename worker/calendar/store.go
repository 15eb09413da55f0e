package calendar

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// maxFile bounds the calendar file the worker reads.
const maxFile = 32 << 20

// store is the calendar file, opened once, before the worker is confined,
// and read and written through that descriptor ever after: a confined
// worker could not open it again.
//
// Lock order: mu, then the file lock.
type store struct {
	path string

	mu sync.Mutex
	f  *os.File
}

// openStore opens path for reading and writing, creating it (0600) when it
// does not exist; mkdir creates its directory (0700) first.
func openStore(path string, mkdir bool) (*store, error) {
	if mkdir {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create calendar directory: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open calendar: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open calendar: %w", err)
	}
	if !st.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("calendar %s is not a regular file", path)
	}
	return &store{path: path, f: f}, nil
}

// read returns the file's contents.
func (s *store) read() ([]byte, error) {
	var b []byte
	err := s.locked(lockShared, func() (err error) {
		b, err = s.contents()
		return err
	})
	return b, err
}

// update reads the file under an exclusive lock and passes its contents to
// fn, which returns where to write what; data == nil writes nothing. The
// file only ever grows: what precedes off is left as it was, so a write
// cut short by a crash loses at most the new event.
func (s *store) update(fn func(cur []byte) (off int64, data []byte, err error)) error {
	return s.locked(lockExclusive, func() error {
		cur, err := s.contents()
		if err != nil {
			return err
		}
		off, data, err := fn(cur)
		if err != nil || data == nil {
			return err
		}
		if _, err := s.f.WriteAt(data, off); err != nil {
			return fmt.Errorf("write calendar %s: %w", s.path, err)
		}
		if end := off + int64(len(data)); end < int64(len(cur)) {
			if err := s.f.Truncate(end); err != nil {
				return fmt.Errorf("write calendar %s: %w", s.path, err)
			}
		}
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("sync calendar %s: %w", s.path, err)
		}
		return nil
	})
}

func (s *store) locked(how int, fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.current(); err != nil {
		return err
	}
	if err := flockFile(s.f, how); err != nil {
		return fmt.Errorf("lock calendar %s: %w", s.path, err)
	}
	defer func() { _ = flockFile(s.f, lockUnlock) }()
	return fn()
}

// current makes sure the descriptor is still the file at path. An editor
// that saves by writing a new file and renaming it over the old one leaves
// the worker holding the old file: it opens the new one if it still may,
// and otherwise says what to do.
func (s *store) current() error {
	onDisk, err := os.Stat(s.path)
	if err == nil {
		held, herr := s.f.Stat()
		if herr == nil && os.SameFile(onDisk, held) {
			return nil
		}
	}
	f, oerr := os.OpenFile(s.path, os.O_RDWR, 0)
	if oerr != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("calendar %s was removed since the worker started; restore it, or restart the worker to create a new one", s.path)
		}
		return fmt.Errorf("calendar %s was replaced since the worker started, and the confined worker may not open the new file; restart the worker to pick it up", s.path)
	}
	_ = s.f.Close()
	s.f = f
	return nil
}

// contents reads the whole file through the descriptor.
func (s *store) contents() ([]byte, error) {
	st, err := s.f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read calendar %s: %w", s.path, err)
	}
	if st.Size() > maxFile {
		return nil, fmt.Errorf("calendar %s is larger than %d MiB", s.path, maxFile>>20)
	}
	b := make([]byte, st.Size())
	n, err := s.f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read calendar %s: %w", s.path, err)
	}
	return b[:n], nil
}
