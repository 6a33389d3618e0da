/*
 * locktest: the Linux kernel's NLM client, exercised from inside the guest.
 *
 * Every case runs its processes on different NFS mounts of one export (mounted with
 * `nosharecache`, so each mount has its own superblock and local lock list): the client cannot
 * settle a conflict between them locally and must ask the server, which is what we test.
 *
 * A case drives "agents": forked processes, each working through one mount, that carry out one
 * command at a time (open, fcntl, flock, close) and answer over a pipe. A blocking command's
 * answer is read later, with a deadline, so a case can check that a waiter is still waiting and
 * then that it is woken.
 *
 * Output, one line each, on stdout (the serial console):
 *   BRLOCK-CASE <name> PASS <ms>
 *   BRLOCK-CASE <name> FAIL <ms> <what went wrong>
 *   BRLOCK-DMESG <line>            (after a failed case: the kernel's lockd/statd/NFS lines)
 *   BRLOCK-DONE <passed> <failed>
 *
 * Usage: locktest [--only NAME[,NAME…]] [--skip NAME[,NAME…]] [--control TTY] MOUNT1 … MOUNT4
 *   --control TTY   a line to the host ("BRLOCK-SYNC restart-kill"), answered "BRLOCK-GO …" once
 *                   it has acted; the restart cases need it
 *        locktest --list    (the case names, one a line)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GIB (1LL << 30)
/* An answer to a non-blocking call that takes longer than this is a hung client or server. */
#define ANSWER_MS 20000
/* A waiter woken by GRANTED answers well within this (TCG guest); without GRANTED the Linux
 * client only retries a blocked lock every 30 s (NLMCLNT_POLL_TIMEOUT), so this tells them apart. */
#define WAKE_MS 10000
/* How long a waiter is watched to see that it is still waiting. */
#define STILL_WAITING_MS 1500

enum op {
	OP_OPEN = 1,
	OP_CLOSE,
	OP_FCNTL,   /* F_SETLK / F_SETLKW / F_GETLK and the OFD forms */
	OP_FLOCK,
	OP_EXIT,
};

struct cmd {
	int op;
	int fcntl_cmd;
	int type;
	int flock_op;
	long long start;
	long long len;
	char path[200];
};

struct answer {
	int ret;
	int err;
	int type;
	int pid;
	long long start;
	long long len;
};

struct agent {
	pid_t pid;
	int to;     /* commands */
	int from;   /* answers */
	const char *mount;
	char name[8];
};

static const char *mounts[4];
static char failure[512];
static const char *case_name;

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Records the first failure of the running case; later ones are consequences. */
static int fail(const char *fmt, ...)
{
	if (failure[0] == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(failure, sizeof failure, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static void on_sigusr1(int sig)
{
	(void)sig; /* only interrupts a blocking fcntl (no SA_RESTART) */
}

static int full_write(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int full_read(int fd, void *buf, size_t n)
{
	char *p = buf;
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static void agent_loop(int in, int out)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigusr1;
	sigaction(SIGUSR1, &sa, NULL);
	int fd = -1;
	struct cmd c;
	while (full_read(in, &c, sizeof c) == 0) {
		struct answer a;
		memset(&a, 0, sizeof a);
		errno = 0;
		switch (c.op) {
		case OP_OPEN:
			fd = open(c.path, O_RDWR | O_CREAT, 0666);
			a.ret = fd < 0 ? -1 : 0;
			break;
		case OP_CLOSE:
			a.ret = close(fd);
			fd = -1;
			break;
		case OP_FCNTL: {
			struct flock fl;
			memset(&fl, 0, sizeof fl);
			fl.l_type = (short)c.type;
			fl.l_whence = SEEK_SET;
			fl.l_start = c.start;
			fl.l_len = c.len;
			a.ret = fcntl(fd, c.fcntl_cmd, &fl);
			a.type = fl.l_type;
			a.start = fl.l_start;
			a.len = fl.l_len;
			a.pid = fl.l_pid;
			break;
		}
		case OP_FLOCK:
			a.ret = flock(fd, c.flock_op);
			break;
		case OP_EXIT:
			_exit(0);
		}
		a.err = a.ret < 0 ? errno : 0;
		if (full_write(out, &a, sizeof a) < 0)
			break;
	}
	_exit(0);
}

static int agent_start(struct agent *ag, int mount, const char *name)
{
	int to[2], from[2];
	if (pipe(to) < 0 || pipe(from) < 0)
		return fail("pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		return fail("fork: %s", strerror(errno));
	if (pid == 0) {
		close(to[1]);
		close(from[0]);
		agent_loop(to[0], from[1]);
	}
	close(to[0]);
	close(from[1]);
	ag->pid = pid;
	ag->to = to[1];
	ag->from = from[0];
	ag->mount = mounts[mount];
	snprintf(ag->name, sizeof ag->name, "%s", name);
	return 0;
}

static void agent_stop(struct agent *ag)
{
	if (ag->pid <= 0)
		return;
	kill(ag->pid, SIGKILL);
	waitpid(ag->pid, NULL, 0);
	close(ag->to);
	close(ag->from);
	ag->pid = 0;
}

static int send_cmd(struct agent *ag, const struct cmd *c)
{
	if (full_write(ag->to, c, sizeof *c) < 0)
		return fail("%s: agent is gone", ag->name);
	return 0;
}

/* Waits up to `ms` for the agent's answer: 0 answered, 1 still busy, -1 broken. */
static int recv_answer(struct agent *ag, struct answer *a, int ms)
{
	struct pollfd p = {.fd = ag->from, .events = POLLIN};
	long long deadline = now_ms() + ms;
	for (;;) {
		long long left = deadline - now_ms();
		if (left < 0)
			left = 0;
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return 1;
		if (r < 0 || full_read(ag->from, a, sizeof *a) < 0)
			return fail("%s: agent died", ag->name);
		return 0;
	}
}

static int call_within(struct agent *ag, const struct cmd *c, struct answer *a, int ms)
{
	if (send_cmd(ag, c) < 0)
		return -1;
	int r = recv_answer(ag, a, ms);
	if (r == 1)
		return fail("%s: no answer within %d ms", ag->name, ms);
	return r;
}

static int call(struct agent *ag, const struct cmd *c, struct answer *a)
{
	return call_within(ag, c, a, ANSWER_MS);
}

static int open_file(struct agent *ag, const char *file)
{
	struct cmd c = {.op = OP_OPEN};
	snprintf(c.path, sizeof c.path, "%s/%s", ag->mount, file);
	struct answer a;
	if (call(ag, &c, &a) < 0)
		return -1;
	if (a.ret < 0)
		return fail("%s: open %s: %s", ag->name, c.path, strerror(a.err));
	return 0;
}

static const char *type_name(int type)
{
	return type == F_RDLCK ? "R" : type == F_WRLCK ? "W" : type == F_UNLCK ? "U" : "?";
}

static const char *err_name(int err)
{
	switch (err) {
	case 0: return "ok";
	case EAGAIN: return "EAGAIN";
	case EACCES: return "EACCES";
	case EDEADLK: return "EDEADLK";
	case EINTR: return "EINTR";
	case ENOLCK: return "ENOLCK";
	case EINVAL: return "EINVAL";
	case EIO: return "EIO";
	case EBADF: return "EBADF";
	default: return strerror(err);
	}
}

static struct cmd lock_cmd(int fcntl_cmd, int type, long long start, long long len)
{
	struct cmd c = {.op = OP_FCNTL, .fcntl_cmd = fcntl_cmd, .type = type, .start = start, .len = len};
	return c;
}

/* F_SETLK (or F_OFD_SETLK) and check the errno it ends with (0 = granted). EACCES and EAGAIN are
 * both "conflict" in POSIX; Linux NFS answers EAGAIN, and that is what we expect. */
static int expect_setlk_within(struct agent *ag, int fcntl_cmd, int type, long long start,
			       long long len, int want_err, int ms)
{
	struct cmd c = lock_cmd(fcntl_cmd, type, start, len);
	struct answer a;
	if (call_within(ag, &c, &a, ms) < 0)
		return -1;
	if (a.err != want_err)
		return fail("%s: %s [%lld,+%lld) gave %s, expected %s", ag->name, type_name(type), start,
			    len, err_name(a.err), err_name(want_err));
	return 0;
}

static int expect_setlk(struct agent *ag, int fcntl_cmd, int type, long long start, long long len,
			int want_err)
{
	return expect_setlk_within(ag, fcntl_cmd, type, start, len, want_err, ANSWER_MS);
}

static int setlk(struct agent *ag, int type, long long start, long long len, int want_err)
{
	return expect_setlk(ag, F_SETLK, type, start, len, want_err);
}

static int unlock(struct agent *ag, long long start, long long len)
{
	return setlk(ag, F_UNLCK, start, len, 0);
}

/* Starts a blocking F_SETLKW whose answer is collected later with `expect_woken`. */
static int start_setlkw(struct agent *ag, int fcntl_cmd, int type, long long start, long long len)
{
	struct cmd c = lock_cmd(fcntl_cmd, type, start, len);
	return send_cmd(ag, &c);
}

/* The agent's blocking call is still blocked after `ms`. */
static int expect_waiting(struct agent *ag, int ms)
{
	struct answer a;
	int r = recv_answer(ag, &a, ms);
	if (r < 0)
		return -1;
	if (r == 0)
		return fail("%s: blocking lock returned %s while it should still wait", ag->name,
			    err_name(a.err));
	return 0;
}

/* The agent's blocking call ends with `want_err` within `ms`; returns the time it took, or -1. */
static long long expect_woken(struct agent *ag, int want_err, int ms)
{
	long long t0 = now_ms();
	struct answer a;
	int r = recv_answer(ag, &a, ms);
	if (r < 0)
		return -1;
	if (r == 1)
		return fail("%s: blocking lock not answered within %d ms", ag->name, ms);
	if (a.err != want_err)
		return fail("%s: blocking lock gave %s, expected %s", ag->name, err_name(a.err),
			    err_name(want_err));
	return now_ms() - t0;
}

/* F_GETLK over [start, +len) for `type`; checks the reported conflict (F_UNLCK: none). */
static int expect_getlk(struct agent *ag, int fcntl_cmd, int type, long long start, long long len,
			int want_type, long long want_start, long long want_len)
{
	struct cmd c = lock_cmd(fcntl_cmd, type, start, len);
	struct answer a;
	if (call(ag, &c, &a) < 0)
		return -1;
	if (a.ret < 0)
		return fail("%s: GETLK failed: %s", ag->name, err_name(a.err));
	if (a.type != want_type)
		return fail("%s: GETLK reported %s, expected %s", ag->name, type_name(a.type),
			    type_name(want_type));
	if (want_type != F_UNLCK && (a.start != want_start || a.len != want_len))
		return fail("%s: GETLK reported [%lld,+%lld), expected [%lld,+%lld)", ag->name,
			    a.start, a.len, want_start, want_len);
	return 0;
}

static int do_flock(struct agent *ag, int flock_op, int want_err)
{
	struct cmd c = {.op = OP_FLOCK, .flock_op = flock_op};
	struct answer a;
	if (call(ag, &c, &a) < 0)
		return -1;
	if (a.err != want_err)
		return fail("%s: flock(%d) gave %s, expected %s", ag->name, flock_op, err_name(a.err),
			    err_name(want_err));
	return 0;
}

static int close_file(struct agent *ag)
{
	struct cmd c = {.op = OP_CLOSE};
	struct answer a;
	if (call(ag, &c, &a) < 0)
		return -1;
	if (a.ret < 0)
		return fail("%s: close: %s", ag->name, err_name(a.err));
	return 0;
}

/* ---- the cases ---------------------------------------------------------------------------- */

#define MAX_AGENTS 4
static struct agent agents[MAX_AGENTS];

/* Starts n agents named A, B, … on mounts 0, 1, … and opens `file` in each. */
static int setup(int n, const char *file)
{
	static const char *names[] = {"A", "B", "C", "D"};
	for (int i = 0; i < n; i++) {
		if (agent_start(&agents[i], i, names[i]) < 0 || open_file(&agents[i], file) < 0)
			return -1;
	}
	return 0;
}

#define A (&agents[0])
#define B (&agents[1])
#define C (&agents[2])
#define D (&agents[3])
#define TRY(x) do { if ((x) < 0) return -1; } while (0)

static int conflict_is_eagain(void)
{
	TRY(setup(2, "conflict"));
	TRY(setlk(A, F_WRLCK, 0, 10, 0));
	TRY(setlk(B, F_WRLCK, 5, 10, EAGAIN));
	TRY(setlk(B, F_RDLCK, 9, 1, EAGAIN));
	TRY(setlk(B, F_WRLCK, 10, 10, 0)); /* adjacent, not overlapping */
	return 0;
}

static int getlk_names_the_holders_range(void)
{
	TRY(setup(2, "getlk"));
	TRY(expect_getlk(B, F_GETLK, F_WRLCK, 0, 0, F_UNLCK, 0, 0));
	TRY(setlk(A, F_WRLCK, 100, 100, 0));
	TRY(expect_getlk(B, F_GETLK, F_WRLCK, 0, 0, F_WRLCK, 100, 100));
	TRY(expect_getlk(B, F_GETLK, F_RDLCK, 150, 1, F_WRLCK, 100, 100));
	TRY(expect_getlk(B, F_GETLK, F_WRLCK, 200, 50, F_UNLCK, 0, 0));
	return 0;
}

static int readers_share_and_a_writer_is_refused(void)
{
	TRY(setup(3, "shared"));
	TRY(setlk(A, F_RDLCK, 0, 100, 0));
	TRY(setlk(B, F_RDLCK, 50, 100, 0));
	TRY(setlk(C, F_WRLCK, 60, 1, EAGAIN));
	TRY(expect_getlk(C, F_GETLK, F_WRLCK, 120, 10, F_RDLCK, 50, 100));
	TRY(setlk(C, F_WRLCK, 150, 10, 0));
	return 0;
}

static int upgrade_refused_by_another_reader_then_allowed(void)
{
	TRY(setup(3, "upgrade"));
	TRY(setlk(A, F_RDLCK, 0, 100, 0));
	TRY(setlk(B, F_RDLCK, 0, 100, 0));
	TRY(setlk(A, F_WRLCK, 0, 100, EAGAIN));
	TRY(unlock(B, 0, 100));
	TRY(setlk(A, F_WRLCK, 0, 100, 0));
	TRY(setlk(C, F_RDLCK, 10, 1, EAGAIN));
	return 0;
}

static int downgrade_lets_readers_in(void)
{
	TRY(setup(2, "downgrade"));
	TRY(setlk(A, F_WRLCK, 0, 100, 0));
	TRY(setlk(B, F_RDLCK, 0, 10, EAGAIN));
	TRY(setlk(A, F_RDLCK, 0, 100, 0));
	TRY(setlk(B, F_RDLCK, 0, 10, 0));
	TRY(setlk(B, F_WRLCK, 20, 10, EAGAIN));
	return 0;
}

static int unlock_in_the_middle_splits_a_lock(void)
{
	TRY(setup(2, "split"));
	TRY(setlk(A, F_WRLCK, 0, 300, 0));
	TRY(unlock(A, 100, 100));
	TRY(setlk(B, F_WRLCK, 100, 100, 0));
	TRY(setlk(B, F_WRLCK, 99, 1, EAGAIN));
	TRY(setlk(B, F_WRLCK, 200, 1, EAGAIN));
	TRY(expect_getlk(B, F_GETLK, F_WRLCK, 250, 0, F_WRLCK, 200, 100));
	return 0;
}

static int adjacent_locks_merge(void)
{
	TRY(setup(2, "merge"));
	TRY(setlk(A, F_WRLCK, 0, 100, 0));
	TRY(setlk(A, F_WRLCK, 100, 100, 0));
	/* The server holds one lock [0, 200): TEST names all of it. */
	TRY(expect_getlk(B, F_GETLK, F_WRLCK, 150, 1, F_WRLCK, 0, 200));
	TRY(unlock(A, 50, 100));
	TRY(setlk(B, F_WRLCK, 60, 80, 0));
	TRY(setlk(B, F_WRLCK, 0, 1, EAGAIN));
	TRY(setlk(B, F_WRLCK, 199, 1, EAGAIN));
	return 0;
}

static int a_lock_to_eof_covers_every_later_offset(void)
{
	TRY(setup(2, "eof"));
	TRY(setlk(A, F_WRLCK, 1000, 0, 0));
	TRY(setlk(B, F_WRLCK, 1LL << 40, 1, EAGAIN));
	TRY(setlk(B, F_WRLCK, 999, 2, EAGAIN));
	TRY(setlk(B, F_WRLCK, 0, 1000, 0));
	TRY(expect_getlk(B, F_GETLK, F_RDLCK, 5000, 1, F_WRLCK, 1000, 0));
	return 0;
}

static int offsets_above_4gib(void)
{
	TRY(setup(2, "above4g"));
	TRY(setlk(A, F_WRLCK, 5 * GIB, 10, 0));
	TRY(expect_getlk(B, F_GETLK, F_WRLCK, 4 * GIB, 2 * GIB, F_WRLCK, 5 * GIB, 10));
	TRY(setlk(B, F_WRLCK, 5 * GIB + 9, 1, EAGAIN));
	/* The same offsets modulo 2^32 are free: nothing is truncated on the way. */
	TRY(setlk(B, F_WRLCK, GIB, 10, 0));
	TRY(setlk(B, F_WRLCK, 5 * GIB + 10, 10, 0));
	return 0;
}

static int offsets_near_2_pow_62(void)
{
	const long long big = 1LL << 62;
	TRY(setup(2, "near2p62"));
	TRY(setlk(A, F_WRLCK, big, 4096, 0));
	TRY(expect_getlk(B, F_GETLK, F_WRLCK, big - 1, 2, F_WRLCK, big, 4096));
	TRY(setlk(B, F_RDLCK, big + 4095, 1, EAGAIN));
	TRY(setlk(B, F_WRLCK, big + 4096, 0, 0));
	TRY(setlk(B, F_WRLCK, big - 4096, 4096, 0));
	return 0;
}

static int setlkw_is_woken_by_granted_soon_after_the_unlock(void)
{
	TRY(setup(2, "granted"));
	TRY(setlk(A, F_WRLCK, 0, 10, 0));
	TRY(start_setlkw(B, F_SETLKW, F_WRLCK, 0, 10));
	TRY(expect_waiting(B, STILL_WAITING_MS));
	TRY(unlock(A, 0, 10));
	long long took = expect_woken(B, 0, WAKE_MS);
	TRY(took);
	printf("BRLOCK-INFO %s woken %lld ms after the unlock\n", case_name, took);
	TRY(setlk(A, F_WRLCK, 0, 1, EAGAIN));
	return 0;
}

static int waiters_are_served_in_order(void)
{
	TRY(setup(4, "fifo"));
	TRY(setlk(A, F_WRLCK, 0, 10, 0));
	TRY(start_setlkw(B, F_SETLKW, F_WRLCK, 0, 10));
	TRY(expect_waiting(B, STILL_WAITING_MS));
	TRY(start_setlkw(C, F_SETLKW, F_WRLCK, 0, 10));
	TRY(expect_waiting(C, STILL_WAITING_MS));
	TRY(start_setlkw(D, F_SETLKW, F_WRLCK, 0, 10));
	TRY(expect_waiting(D, STILL_WAITING_MS));
	TRY(unlock(A, 0, 10));
	TRY(expect_woken(B, 0, WAKE_MS));
	TRY(expect_waiting(C, STILL_WAITING_MS));
	TRY(expect_waiting(D, 10));
	TRY(unlock(B, 0, 10));
	TRY(expect_woken(C, 0, WAKE_MS));
	TRY(expect_waiting(D, STILL_WAITING_MS));
	TRY(unlock(C, 0, 10));
	TRY(expect_woken(D, 0, WAKE_MS));
	return 0;
}

static int a_signal_interrupts_setlkw_and_cancels_it(void)
{
	TRY(setup(3, "cancel"));
	TRY(setlk(A, F_WRLCK, 0, 10, 0));
	TRY(start_setlkw(B, F_SETLKW, F_WRLCK, 0, 10));
	TRY(expect_waiting(B, STILL_WAITING_MS));
	kill(B->pid, SIGUSR1);
	TRY(expect_woken(B, EINTR, WAKE_MS));
	/* The client sent NLM_CANCEL: once A lets go, nobody was granted behind C's back. */
	TRY(unlock(A, 0, 10));
	TRY(setlk(C, F_WRLCK, 0, 10, 0));
	TRY(setlk(B, F_WRLCK, 0, 1, EAGAIN));
	return 0;
}

static int close_releases_and_wakes_a_waiter(void)
{
	TRY(setup(2, "close"));
	TRY(setlk(A, F_WRLCK, 0, 0, 0));
	TRY(start_setlkw(B, F_SETLKW, F_WRLCK, 100, 10));
	TRY(expect_waiting(B, STILL_WAITING_MS));
	TRY(close_file(A));
	TRY(expect_woken(B, 0, WAKE_MS));
	return 0;
}

static int sigkill_releases_and_wakes_a_waiter(void)
{
	TRY(setup(2, "sigkill"));
	TRY(setlk(A, F_WRLCK, 0, 0, 0));
	TRY(start_setlkw(B, F_SETLKW, F_WRLCK, 100, 10));
	TRY(expect_waiting(B, STILL_WAITING_MS));
	agent_stop(A);
	TRY(expect_woken(B, 0, WAKE_MS));
	return 0;
}

static int deadlock_is_edeadlk(void)
{
	TRY(setup(2, "deadlock"));
	TRY(setlk(A, F_WRLCK, 0, 10, 0));
	TRY(setlk(B, F_WRLCK, 20, 10, 0));
	TRY(start_setlkw(A, F_SETLKW, F_WRLCK, 20, 10));
	TRY(expect_waiting(A, STILL_WAITING_MS));
	/* B waiting for A, who waits for B: refused instead of hanging both. */
	TRY(start_setlkw(B, F_SETLKW, F_WRLCK, 0, 10));
	TRY(expect_woken(B, EDEADLK, WAKE_MS));
	TRY(unlock(B, 20, 10));
	TRY(expect_woken(A, 0, WAKE_MS));
	return 0;
}

static int flock_is_a_whole_file_lock_on_the_server(void)
{
	TRY(setup(2, "flock"));
	TRY(do_flock(A, LOCK_EX | LOCK_NB, 0));
	TRY(setlk(B, F_RDLCK, 1LL << 33, 10, EAGAIN));
	TRY(do_flock(B, LOCK_SH | LOCK_NB, EWOULDBLOCK));
	TRY(do_flock(A, LOCK_UN, 0));
	TRY(do_flock(B, LOCK_SH | LOCK_NB, 0));
	TRY(setlk(A, F_WRLCK, 0, 1, EAGAIN));
	return 0;
}

static int ofd_locks_are_owners_of_their_own(void)
{
	TRY(setup(2, "ofd"));
	TRY(expect_setlk(A, F_OFD_SETLK, F_WRLCK, 0, 10, 0));
	TRY(expect_setlk(B, F_OFD_SETLK, F_WRLCK, 5, 1, EAGAIN));
	TRY(setlk(B, F_WRLCK, 5, 1, EAGAIN));
	TRY(expect_getlk(B, F_OFD_GETLK, F_RDLCK, 0, 0, F_WRLCK, 0, 10));
	/* A POSIX lock of A's own process is another owner than A's open file description. */
	TRY(setlk(A, F_WRLCK, 0, 10, EAGAIN));
	TRY(expect_setlk(A, F_OFD_SETLK, F_UNLCK, 0, 10, 0));
	TRY(expect_setlk(B, F_OFD_SETLK, F_WRLCK, 5, 1, 0));
	return 0;
}

/* ---- the host's part: restarts ------------------------------------------------------------ */

/* The second serial port: a line to the host asking it to act, a line back when it has. */
static int ctl_fd = -1;
/* How long the host may take to restart the server and see it registered again. */
#define HOST_ACTION_MS 120000
/* A lock request during the server's grace period is retried by the client every 5 s until the
 * grace period ends (early, once every client has reclaimed), so it may take this long. */
#define AFTER_GRACE_MS 90000

static int ask_host(const char *what)
{
	if (ctl_fd < 0)
		return fail("no control channel to the host (--control)");
	char line[256];
	int n = snprintf(line, sizeof line, "BRLOCK-SYNC %s\n", what);
	if (full_write(ctl_fd, line, (size_t)n) < 0)
		return fail("control channel: %s", strerror(errno));
	char want_go[128], want_fail[128];
	snprintf(want_go, sizeof want_go, "BRLOCK-GO %s", what);
	snprintf(want_fail, sizeof want_fail, "BRLOCK-REFUSED %s", what);
	size_t len = 0;
	long long deadline = now_ms() + HOST_ACTION_MS;
	while (now_ms() < deadline) {
		struct pollfd p = {.fd = ctl_fd, .events = POLLIN};
		int r = poll(&p, 1, 500);
		if (r <= 0)
			continue;
		char ch;
		if (read(ctl_fd, &ch, 1) != 1)
			continue;
		if (ch == '\r')
			continue;
		if (ch != '\n') {
			if (len + 1 < sizeof line)
				line[len++] = ch;
			continue;
		}
		line[len] = 0;
		len = 0;
		if (strcmp(line, want_go) == 0)
			return 0;
		if (strncmp(line, want_fail, strlen(want_fail)) == 0)
			return fail("host could not %s: %s", what, line + strlen(want_fail));
	}
	return fail("host did not %s within %d ms", what, HOST_ACTION_MS);
}

static int kernel_said(const char *needle)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "dmesg | grep -q '%s'", needle);
	return system(cmd) == 0;
}

/* A process holds two locks; the server restarts (`how`: the host's action); the client's lockd
 * reclaims them after the server's own reboot notice, with no manual step; another mount's process
 * is refused both ranges until the holder unlocks, then gets them. */
static int held_locks_survive(const char *how, const char *file)
{
	TRY(setup(2, file));
	TRY(setlk(A, F_WRLCK, 0, 10, 0));
	TRY(setlk(A, F_RDLCK, 100, 10, 0));
	TRY(ask_host(how));
	/* The first request after the restart waits out the grace period or the reclaims. */
	TRY(expect_setlk_within(B, F_SETLK, F_WRLCK, 0, 10, EAGAIN, AFTER_GRACE_MS));
	TRY(setlk(B, F_WRLCK, 105, 1, EAGAIN));
	TRY(setlk(B, F_RDLCK, 105, 1, 0));
	TRY(unlock(A, 0, 10));
	TRY(setlk(B, F_WRLCK, 0, 10, 0));
	if (kernel_said("failed to reclaim"))
		return fail("the guest's lockd logged 'failed to reclaim'");
	if (kernel_said("spurious grace period reject"))
		return fail("the guest's lockd logged 'spurious grace period reject'");
	return 0;
}

static int a_held_lock_survives_a_server_crash(void)
{
	return held_locks_survive("restart-kill", "restart-kill");
}

static int a_held_lock_survives_a_clean_server_restart(void)
{
	return held_locks_survive("restart-term", "restart-term");
}

struct test_case {
	const char *name;
	int (*run)(void);
};

static const struct test_case cases[] = {
	{"conflict_is_eagain", conflict_is_eagain},
	{"getlk_names_the_holders_range", getlk_names_the_holders_range},
	{"readers_share_and_a_writer_is_refused", readers_share_and_a_writer_is_refused},
	{"upgrade_refused_by_another_reader_then_allowed", upgrade_refused_by_another_reader_then_allowed},
	{"downgrade_lets_readers_in", downgrade_lets_readers_in},
	{"unlock_in_the_middle_splits_a_lock", unlock_in_the_middle_splits_a_lock},
	{"adjacent_locks_merge", adjacent_locks_merge},
	{"a_lock_to_eof_covers_every_later_offset", a_lock_to_eof_covers_every_later_offset},
	{"offsets_above_4gib", offsets_above_4gib},
	{"offsets_near_2_pow_62", offsets_near_2_pow_62},
	{"setlkw_is_woken_by_granted_soon_after_the_unlock", setlkw_is_woken_by_granted_soon_after_the_unlock},
	{"waiters_are_served_in_order", waiters_are_served_in_order},
	{"a_signal_interrupts_setlkw_and_cancels_it", a_signal_interrupts_setlkw_and_cancels_it},
	{"close_releases_and_wakes_a_waiter", close_releases_and_wakes_a_waiter},
	{"sigkill_releases_and_wakes_a_waiter", sigkill_releases_and_wakes_a_waiter},
	{"deadlock_is_edeadlk", deadlock_is_edeadlk},
	{"flock_is_a_whole_file_lock_on_the_server", flock_is_a_whole_file_lock_on_the_server},
	{"ofd_locks_are_owners_of_their_own", ofd_locks_are_owners_of_their_own},
	{"a_held_lock_survives_a_server_crash", a_held_lock_survives_a_server_crash},
	{"a_held_lock_survives_a_clean_server_restart", a_held_lock_survives_a_clean_server_restart},
};

static int listed(const char *list, const char *name)
{
	if (list == NULL)
		return 0;
	size_t n = strlen(name);
	for (const char *p = list; *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == n && strncmp(p, name, n) == 0)
			return 1;
		if (!end)
			break;
		p = end + 1;
	}
	return 0;
}

/* The kernel's lines about lockd, statd and NFS, for a failed case. */
static void print_dmesg(void)
{
	FILE *f = popen("dmesg 2>/dev/null | grep -iE 'lockd|statd|nlm|nfs' | grep -v 'ommand line' | tail -n 40", "r");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof line, f))
		printf("BRLOCK-DMESG %s", line);
	pclose(f);
}

int main(int argc, char **argv)
{
	const char *only = NULL, *skip = NULL;
	if (argc == 2 && strcmp(argv[1], "--list") == 0) {
		for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
			printf("%s\n", cases[k].name);
		return 0;
	}
	int i = 1;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (i + 1 >= argc)
			break;
		if (strcmp(argv[i], "--only") == 0)
			only = argv[i + 1];
		else if (strcmp(argv[i], "--skip") == 0)
			skip = argv[i + 1];
		else if (strcmp(argv[i], "--control") == 0)
			ctl_fd = open(argv[i + 1], O_RDWR | O_NOCTTY);
	}
	if (argc - i != 4) {
		fprintf(stderr, "usage: locktest [--only A,B] [--skip A,B] MOUNT1 MOUNT2 MOUNT3 MOUNT4\n");
		return 2;
	}
	for (int m = 0; m < 4; m++)
		mounts[m] = argv[i + m];
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);

	int passed = 0, failed = 0;
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		const struct test_case *t = &cases[k];
		if ((only && !listed(only, t->name)) || listed(skip, t->name))
			continue;
		case_name = t->name;
		failure[0] = 0;
		long long t0 = now_ms();
		int r = t->run();
		for (int a = 0; a < MAX_AGENTS; a++)
			agent_stop(&agents[a]);
		long long took = now_ms() - t0;
		if (r == 0 && failure[0] == 0) {
			passed++;
			printf("BRLOCK-CASE %s PASS %lld\n", t->name, took);
		} else {
			failed++;
			printf("BRLOCK-CASE %s FAIL %lld %s\n", t->name, took, failure);
			print_dmesg();
		}
	}
	printf("BRLOCK-DONE %d %d\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
