package benchmarks_test

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// sleeper waits until a given time with the precision of the kernel's
// high-resolution timers: a timerfd read through Go's netpoller. Go's
// own timers would not do for the delay proxy: with nothing else to run,
// the runtime waits for its next timer in epoll_wait, whose timeout has a
// resolution of one millisecond, so a 200 µs sleep lasts about 1.1 ms.
type sleeper struct{ f *os.File }

func newSleeper() (*sleeper, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd_create: %w", err)
	}
	// a non-blocking descriptor: os.File reads it through the netpoller
	return &sleeper{f: os.NewFile(uintptr(fd), "timerfd")}, nil
}

// sleepUntil returns at t, or at once when t has passed.
func (s *sleeper) sleepUntil(t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	rc, err := s.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("timerfd: %w", err)
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(d.Nanoseconds())}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.TimerfdSettime(int(fd), 0, &spec, nil) }); err != nil {
		return fmt.Errorf("timerfd: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("timerfd_settime: %w", serr)
	}
	var expirations [8]byte
	if _, err := s.f.Read(expirations[:]); err != nil {
		return fmt.Errorf("timerfd read: %w", err)
	}
	return nil
}

func (s *sleeper) close() { _ = s.f.Close() }
