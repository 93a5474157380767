package mail

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Outcome is what became of one notice in one send.
type Outcome string

// Outcomes of a delivery.
const (
	// Accepted: the SMTP server answered 250 to the message. A re-run
	// skips the notice.
	Accepted Outcome = "accepted"
	// Rejected: a permanent (5xx) reply. A re-run tries again (the
	// operator may have corrected the address).
	Rejected Outcome = "rejected"
	// Deferred: temporary (4xx) replies until the attempts ran out. A
	// re-run tries again.
	Deferred Outcome = "deferred"
)

// Entry is one journal line: a notice id and what became of it, never an
// address or a server's reply text (which may quote the address).
type Entry struct {
	NoticeID     string  `json:"notice_id"`
	Outcome      Outcome `json:"outcome"`
	Code         int     `json:"code,omitempty"`
	EnhancedCode string  `json:"enhanced_code,omitempty"`
	// Reason is Impact's own words when there was no reply to record.
	Reason   string    `json:"reason,omitempty"`
	Attempts int       `json:"attempts"`
	At       time.Time `json:"at"`
}

// Journal is the append-only record of a wave's deliveries (JSON lines,
// mode 0600). An entry is on disk (written and fsynced) before Record
// returns, so after a crash only the messages in flight at that moment can
// be accepted by the server without an entry. Concurrent Records share one
// fsync. The file is locked while open: two sends cannot share a journal.
type Journal struct {
	path string
	f    *os.File

	mu       sync.Mutex
	cond     *sync.Cond
	accepted map[string]bool
	loaded   int
	buf      []byte
	seq      uint64 // entries buffered
	synced   uint64 // entries on disk
	flushing bool
	err      error
}

// OpenJournal opens (or creates) the journal at path and loads it. A last
// line cut short by a crash is dropped; any other line that is not an
// entry is an error naming it.
func OpenJournal(path string) (*Journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600) // #nosec G304 -- the journal file the operator names
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if err := lockFile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("journal %s is in use by another notice send", path)
	}
	j := &Journal{path: path, f: f, accepted: map[string]bool{}}
	j.cond = sync.NewCond(&j.mu)
	end, err := j.load()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	// Drop a torn tail, and append from the end of the last whole entry.
	if err := f.Truncate(end); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("journal: %w", err)
	}
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("journal: %w", err)
	}
	return j, nil
}

// load reads every entry and returns the offset after the last whole one.
func (j *Journal) load() (int64, error) {
	r := bufio.NewReader(j.f)
	var off int64
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			// A line without its newline is a write cut short: drop it.
			return off, nil
		}
		if err != nil {
			return 0, fmt.Errorf("journal: %w", err)
		}
		if len(bytes.TrimSpace(b)) > 0 {
			var e Entry
			if err := json.Unmarshal(b, &e); err != nil || !ValidNoticeID(e.NoticeID) || e.Outcome == "" {
				return 0, fmt.Errorf("journal %s line %d: not a journal entry", j.path, line)
			}
			if e.Outcome == Accepted {
				j.accepted[e.NoticeID] = true
			}
			j.loaded++
		}
		off += int64(len(b))
	}
}

// Path returns the journal's file name.
func (j *Journal) Path() string { return j.path }

// Loaded returns how many entries the journal held when opened.
func (j *Journal) Loaded() int { return j.loaded }

// Accepted reports whether the server accepted the notice in this or an
// earlier run.
func (j *Journal) Accepted(noticeID string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.accepted[noticeID]
}

// Record appends e and returns once it is on disk.
func (j *Journal) Record(e Entry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	j.buf = append(append(j.buf, line...), '\n')
	j.seq++
	mine := j.seq
	for j.synced < mine {
		if j.err != nil {
			return j.err
		}
		if j.flushing {
			j.cond.Wait()
			continue
		}
		// Flush everything buffered so far, for every waiting writer.
		j.flushing = true
		buf, upto := j.buf, j.seq
		j.buf = nil
		j.mu.Unlock()
		_, err := j.f.Write(buf)
		if err == nil {
			err = j.f.Sync()
		}
		j.mu.Lock()
		j.flushing = false
		if err != nil {
			j.err = fmt.Errorf("journal %s: %w", j.path, err)
		} else {
			j.synced = upto
		}
		j.cond.Broadcast()
	}
	if e.Outcome == Accepted {
		j.accepted[e.NoticeID] = true
	}
	return nil
}

// Close closes the journal (and releases its lock).
func (j *Journal) Close() error {
	return j.f.Close()
}
