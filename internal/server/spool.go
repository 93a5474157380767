package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// spoolPattern names upload spools; RemoveSpools also removes the
// "roster-*.csv" spools of earlier releases, which were unlinked only when
// the upload returned and so outlived a crash.
const spoolPattern = "impact-roster-*"

var spoolGlobs = []string{spoolPattern, "roster-*.csv"}

// openSpool creates an upload spool in dir and unlinks it at once: it is
// read and written through the returned file only, and no path reaches it.
func openSpool(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, spoolPattern)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("unlink spool: %w", err)
	}
	return f, nil
}

// RemoveSpools deletes upload spools left in dir by an earlier process
// (a release that kept spools linked, or a platform that cannot unlink an
// open file), so that no roster copy with raw subject ids stays at rest.
// It returns how many it removed. dir must be impactd's own upload
// directory: only spool names are touched.
func RemoveSpools(dir string) (int, error) {
	n := 0
	var errs []error
	for _, g := range spoolGlobs {
		paths, err := filepath.Glob(filepath.Join(dir, g))
		if err != nil {
			return n, err
		}
		for _, p := range paths {
			switch err := os.Remove(p); {
			case err == nil:
				n++
			case !errors.Is(err, fs.ErrNotExist):
				errs = append(errs, err)
			}
		}
	}
	return n, errors.Join(errs...)
}
