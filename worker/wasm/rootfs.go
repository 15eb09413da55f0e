package wasm

import (
	"errors"
	"io"
	"io/fs"
	"os"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
)

// rootFS is the guest's file system when the manifest grants a file root:
// every operation goes through an os.Root, so no path, ".." or symbolic
// link can reach outside the root. (wazero's own directory mount lets a
// guest follow a symbolic link it created out of the directory.)
// Operations that the guest does not need — changing modes, owners and
// times — are not implemented.
type rootFS struct {
	experimentalsys.UnimplementedFS
	root *os.Root
}

var _ experimentalsys.FS = (*rootFS)(nil)

func errno(err error) experimentalsys.Errno {
	if err == nil {
		return 0
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Err != nil {
		// os.Root reports an escape with an error of its own, which is
		// not an errno: the guest sees a permission error.
		if e := experimentalsys.UnwrapOSError(pe.Err); e != experimentalsys.EIO {
			return e
		}
		return experimentalsys.EPERM
	}
	return experimentalsys.UnwrapOSError(err)
}

func osFlags(flag experimentalsys.Oflag) int {
	var f int
	switch {
	case flag&experimentalsys.O_RDWR != 0:
		f = os.O_RDWR
	case flag&experimentalsys.O_WRONLY != 0:
		f = os.O_WRONLY
	default:
		f = os.O_RDONLY
	}
	if flag&experimentalsys.O_APPEND != 0 {
		f |= os.O_APPEND
	}
	if flag&experimentalsys.O_CREAT != 0 {
		f |= os.O_CREATE
	}
	if flag&experimentalsys.O_EXCL != 0 {
		f |= os.O_EXCL
	}
	if flag&experimentalsys.O_TRUNC != 0 {
		f |= os.O_TRUNC
	}
	if flag&(experimentalsys.O_SYNC|experimentalsys.O_DSYNC|experimentalsys.O_RSYNC) != 0 {
		f |= os.O_SYNC
	}
	return f
}

func (r *rootFS) OpenFile(path string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if flag&experimentalsys.O_NOFOLLOW != 0 {
		if fi, err := r.root.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, experimentalsys.ELOOP
		}
	}
	f, err := r.root.OpenFile(path, osFlags(flag), perm)
	if err != nil {
		return nil, errno(err)
	}
	rf := &rootFile{f: f, append: flag&experimentalsys.O_APPEND != 0}
	if flag&experimentalsys.O_DIRECTORY != 0 {
		if dir, e := rf.IsDir(); e != 0 || !dir {
			_ = f.Close()
			return nil, experimentalsys.ENOTDIR
		}
	}
	return rf, 0
}

func (r *rootFS) Lstat(path string) (sys.Stat_t, experimentalsys.Errno) {
	fi, err := r.root.Lstat(path)
	if err != nil {
		return sys.Stat_t{}, errno(err)
	}
	return sys.NewStat_t(fi), 0
}

func (r *rootFS) Stat(path string) (sys.Stat_t, experimentalsys.Errno) {
	fi, err := r.root.Stat(path)
	if err != nil {
		return sys.Stat_t{}, errno(err)
	}
	return sys.NewStat_t(fi), 0
}

func (r *rootFS) Mkdir(path string, perm fs.FileMode) experimentalsys.Errno {
	return errno(r.root.Mkdir(path, perm))
}

func (r *rootFS) Rename(from, to string) experimentalsys.Errno {
	return errno(r.root.Rename(from, to))
}

func (r *rootFS) Rmdir(path string) experimentalsys.Errno {
	fi, err := r.root.Lstat(path)
	if err != nil {
		return errno(err)
	}
	if !fi.IsDir() {
		return experimentalsys.ENOTDIR
	}
	return errno(r.root.Remove(path))
}

func (r *rootFS) Unlink(path string) experimentalsys.Errno {
	fi, err := r.root.Lstat(path)
	if err != nil {
		return errno(err)
	}
	if fi.IsDir() {
		return experimentalsys.EISDIR
	}
	return errno(r.root.Remove(path))
}

func (r *rootFS) Link(oldPath, newPath string) experimentalsys.Errno {
	return errno(r.root.Link(oldPath, newPath))
}

func (r *rootFS) Symlink(oldPath, linkName string) experimentalsys.Errno {
	return errno(r.root.Symlink(oldPath, linkName))
}

func (r *rootFS) Readlink(path string) (string, experimentalsys.Errno) {
	s, err := r.root.Readlink(path)
	return s, errno(err)
}

// rootFile is an open file below the root.
type rootFile struct {
	experimentalsys.UnimplementedFile
	f      *os.File
	append bool
}

func (f *rootFile) Dev() (uint64, experimentalsys.Errno) {
	st, e := f.Stat()
	return st.Dev, e
}

func (f *rootFile) Ino() (sys.Inode, experimentalsys.Errno) {
	st, e := f.Stat()
	return st.Ino, e
}

func (f *rootFile) IsDir() (bool, experimentalsys.Errno) {
	st, e := f.Stat()
	return st.Mode.IsDir(), e
}

func (f *rootFile) IsAppend() bool { return f.append }

func (f *rootFile) SetAppend(enable bool) experimentalsys.Errno {
	if enable != f.append {
		return experimentalsys.ENOSYS
	}
	return 0
}

func (f *rootFile) Stat() (sys.Stat_t, experimentalsys.Errno) {
	fi, err := f.f.Stat()
	if err != nil {
		return sys.Stat_t{}, errno(err)
	}
	return sys.NewStat_t(fi), 0
}

func (f *rootFile) Read(buf []byte) (int, experimentalsys.Errno) {
	n, err := f.f.Read(buf)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, errno(err)
}

func (f *rootFile) Pread(buf []byte, off int64) (int, experimentalsys.Errno) {
	n, err := f.f.ReadAt(buf, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, errno(err)
}

// fileOffset is int64. Seek is declared with it because go vet holds every
// method named Seek to io.Seeker's signature, and wazero's File returns an
// Errno instead of an error.
type fileOffset = int64

func (f *rootFile) Seek(offset fileOffset, whence int) (int64, experimentalsys.Errno) {
	n, err := f.f.Seek(offset, whence)
	return n, errno(err)
}

func (f *rootFile) Readdir(n int) ([]experimentalsys.Dirent, experimentalsys.Errno) {
	entries, err := f.f.ReadDir(n)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	if err != nil {
		return nil, errno(err)
	}
	out := make([]experimentalsys.Dirent, 0, len(entries))
	for _, e := range entries {
		out = append(out, experimentalsys.Dirent{Name: e.Name(), Type: e.Type()})
	}
	return out, 0
}

func (f *rootFile) Write(buf []byte) (int, experimentalsys.Errno) {
	n, err := f.f.Write(buf)
	return n, errno(err)
}

func (f *rootFile) Pwrite(buf []byte, off int64) (int, experimentalsys.Errno) {
	if f.append {
		return 0, experimentalsys.EINVAL
	}
	n, err := f.f.WriteAt(buf, off)
	return n, errno(err)
}

func (f *rootFile) Truncate(size int64) experimentalsys.Errno {
	return errno(f.f.Truncate(size))
}

func (f *rootFile) Sync() experimentalsys.Errno     { return errno(f.f.Sync()) }
func (f *rootFile) Datasync() experimentalsys.Errno { return errno(f.f.Sync()) }

func (f *rootFile) Close() experimentalsys.Errno { return errno(f.f.Close()) }
