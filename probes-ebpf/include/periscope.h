/* The one definition of everything shared between the BPF programs and user space.
 * Rust gets these layouts through bindgen (build.rs); nothing is copied by hand.
 * Fixed-width fields only, explicit padding, no bool or enum in structs. */
#ifndef PERISCOPE_H
#define PERISCOPE_H

#include <linux/types.h>

#define PSC_MAX_PROBES 512
#define PSC_MAX_OPS 24
#define PSC_MAX_PATH 4
#define PSC_MAX_ATOMS 8
#define PSC_MAX_PROG 24
#define PSC_MAX_STR 64
#define PSC_NREGS 9
#define PSC_MAX_STACK 256   /* stack bytes captured per section */
#define PSC_MAX_READ 512    /* bytes one op may read */
#define PSC_ENTRY_MAX 2048  /* bytes of a stored entry section */
#define PSC_SCRATCH 8192
#define PSC_HIST_BUCKETS 1280
#define PSC_VERSION 3
#define PSC_STACK_DEPTH 64 /* frames of a captured stack */
#define PSC_STACKS 16384   /* distinct stacks kept (a stack-trace map) */
#define PSC_OUTER 16       /* outermost frames kept of a stack deeper than PSC_STACK_DEPTH */
#define PSC_OUTERS 4096    /* distinct outer parts kept (an LRU hash) */
#define PSC_WALK_MAX 2048  /* frames followed to find a deep stack's outermost ones (~0.4 ms here) */
#define PSC_TIME_EVERY 16   /* time one probe hit in this many (a power of two) */
#define PSC_TIME_HEAD 64    /* ...after timing each of a probe's first hits (per CPU) */
#define PSC_PROG_NS_MAX 1000000 /* a timed hit longer than this was preempted: not counted */

/* Attach cookie: probe id in the low 32 bits, point kind in the next 8, then flags. */
enum psc_point {
	PSC_POINT_ENTRY = 0,      /* emulated entry after the stack check, or first insn */
	PSC_POINT_ENTRY_JBE = 1,  /* the stack check's jbe: drop when morestack follows */
	PSC_POINT_RET = 2,
	PSC_POINT_CALLSITE = 3,   /* entry at a `call` to the function: RSP is 8 higher */
	PSC_POINT_AFTERCALL = 4,  /* return seen after a call site: RSP is 8 higher */
	PSC_POINT_RECOVERY = 5,   /* runtime.recovery's entry: a goroutine recovered a panic */
};
#define PSC_COOKIE_KIND_SHIFT 32
#define PSC_COOKIE_KIND_MASK 0xff
#define PSC_COOKIE_STEPPED (1ull << 40) /* the kernel single-steps this point's instruction */
#define PSC_COOKIE_SHARED (1ull << 41)  /* a return point other paths reach too: pairs only */

enum psc_base { PSC_BASE_NONE = 0, PSC_BASE_REG = 1, PSC_BASE_STACK = 2 };

/* A scalar at the probe point: a register or a stack slot, then a chain of loads
 * (v = *(v + path[i])), the last one `width` bytes wide. */
struct psc_word {
	__u8 base;
	__u8 reg;      /* RAX RBX RCX RDI RSI R8 R9 R10 R11 */
	__u8 nderef;
	__u8 width;    /* 1, 2, 4 or 8 */
	__u32 stack_off;
	__s32 path[PSC_MAX_PATH];
};

enum psc_op_kind { PSC_OP_FIXED = 0, PSC_OP_COUNTED = 1 };
enum psc_section_id { PSC_SEC_ENTRY = 0, PSC_SEC_RET = 1 };

/* Read bytes through a pointer: `size` bytes at `ptr`, or for COUNTED `len * elem`
 * bytes capped at `size` (strings, slices). */
struct psc_op {
	struct psc_word ptr;
	struct psc_word len;
	__u16 kind;
	__u16 size;
	__u16 elem;
	__u16 section;
};

/* LATENCY compares the call's latency (ns, at the return) with `value`; STR_ORDER
 * compares a string with `str` byte-wise, as Go orders strings; FLOAT compares a
 * float32 or float64 (the word's width) with `value`, the constant's ordered key (see
 * the program's float_key), as Go compares floats: NaN unequal to everything. */
enum psc_atom_kind {
	PSC_ATOM_INT = 0,
	PSC_ATOM_STR_EQ = 1,
	PSC_ATOM_STR_PREFIX = 2,
	PSC_ATOM_LATENCY = 3,
	PSC_ATOM_STR_ORDER = 4,
	PSC_ATOM_FLOAT = 5,
};
enum psc_cmp { PSC_EQ = 0, PSC_NE = 1, PSC_LT = 2, PSC_LE = 3, PSC_GT = 4, PSC_GE = 5 };

/* psc_atom.is_signed: bit 0 a signed comparison; this bit: a pointer chain that
 * faults reads as 0 (len of a nil map). */
#define PSC_ATOM_NIL_IS_ZERO 2

struct psc_atom {
	struct psc_word a;  /* the integer, or the string's data pointer */
	struct psc_word b;  /* the string's length */
	__u8 kind;
	__u8 cmp;
	__u8 is_signed;
	__u8 section;
	__u32 str_len;
	__s64 value;
	__u8 str[PSC_MAX_STR];
};

/* Postfix condition program: values < 0x80 push atom N's result. */
#define PSC_PROG_END 0xff
#define PSC_PROG_AND 0x80
#define PSC_PROG_OR 0x81
#define PSC_PROG_NOT 0x82

#define PSC_F_EVENTS (1u << 0)   /* emit one event per (kept) call */
#define PSC_F_PAIRED (1u << 1)   /* store the entry, complete at a RET */
#define PSC_F_LATENCY (1u << 2)  /* record call-to-return latency */
#define PSC_F_COND (1u << 3)     /* prog holds a condition */
#define PSC_F_COND_RET (1u << 4) /* the condition reads results: decide at the RET */
#define PSC_F_ACTIVE (1u << 5)   /* set in every live plan: a zeroed (detached) one does nothing */
#define PSC_F_WINDOWED (1u << 6) /* the return points may be detached: WATCHING says when not */
#define PSC_F_WATCHING (1u << 7) /* the return points are attached: entries are stored to pair */
#define PSC_F_STACK (1u << 8)    /* capture the callers' stack at the entry */
#define PSC_F_BY (1u << 9)       /* one latency histogram per value of `by` */
#define PSC_F_SITES (1u << 10)   /* record the call sites in use (psc_sites) */
#define PSC_F_SITES_ONLY (1u << 11) /* returns are seen after those sites only: a call from
				     * a site not yet covered is seen at its entry only */
#define PSC_SITES 8192           /* (probe, process, return address) kept in psc_sites */
#define PSC_F_PROCS (1u << 12)   /* count hits per process too (psc_procs): a program of several */
#define PSC_PROCS 16384          /* (probe, process) pairs counted in psc_procs */

/* `--by`: what the histograms are split by. */
/* PSC_BY_PID: the calling process (`--by pid` on a program of several). */
enum psc_by_kind { PSC_BY_NONE = 0, PSC_BY_BOOL = 1, PSC_BY_INT = 2, PSC_BY_STR = 3, PSC_BY_PID = 4 };
#define PSC_BY_VALUES 32     /* distinct values per probe; later ones count as "other" */
#define PSC_BY_STR_LEN 32    /* bytes of a string value that name it */
#define PSC_BY_OTHER_FLAG 1  /* psc_by_key.flags: the "other" histogram */

/* How a call's `by` value is found: BOOL runs by_prog over the atoms' results (at the
 * return); INT reads `a`; STR reads the string at (`a` pointer, `b` length). INT and
 * STR are read in `section` (an argument at the entry, a result at the return). */
struct psc_by {
	struct psc_word a;
	struct psc_word b;
	__u8 kind;
	__u8 section;
	__u8 is_signed;
	__u8 _pad[5];
	__u8 prog[PSC_MAX_PROG];
};

struct psc_by_key {
	__u32 probe;
	__u32 flags;
	__u64 value; /* the bool or integer, or a hash of the string's bytes */
};

struct psc_by_name {
	__u32 len;
	__u8 str[PSC_BY_STR_LEN];
	__u32 _pad;
};

struct psc_probe {
	__u32 flags;
	__u32 sample_every; /* keep 1 call in N (1 keeps all) */
	__u32 goid_off;
	__u32 stack_hi_off;
	__u16 nops;
	__u16 natoms;
	__u16 entry_stack_off;
	__u16 entry_stack_len;
	__u16 ret_stack_off;
	__u16 ret_stack_len;
	__u32 latency_floor_ns; /* the probe's own time inside a measured latency: subtracted */
	/* The return points' generation: user space adds one each time it detaches them.
	 * An entry pairs only with a return of its own generation, so a return never
	 * completes a call entered before a gap in what was watched. */
	__u32 generation;
	__u32 _pad;
	__u8 prog[PSC_MAX_PROG];
	struct psc_op ops[PSC_MAX_OPS];
	struct psc_atom atoms[PSC_MAX_ATOMS];
	struct psc_by by;
};

/* Per-probe counters, per CPU. Every call is counted once:
 * hits = emitted + filtered + sampled_out + lost + unrecorded + (calls still in flight). */
struct psc_stats {
	__u64 hits;        /* entry hits that counted as a call */
	__u64 filtered;    /* calls whose condition was false */
	__u64 sampled_out; /* calls dropped by 1-in-N sampling */
	__u64 lost;        /* events the ring buffer had no room for */
	__u64 emitted;     /* calls recorded: an event written, or (latency only) a histogram entry */
	__u64 morestack;   /* jbe hits dropped because the stack grows first */
	__u64 unpaired;    /* RET hits with no entry seen (attached mid-call, evicted): not calls */
	__u64 returns;     /* calls that completed at a RET */
	__u64 matched;     /* calls whose condition held: the sampling sequence */
	__u64 ret_hits;    /* every hit of a RET point, paired or not (each is a cost) */
	__u64 prog_ns;     /* time this program spent on the timed hits after the head (one in PSC_TIME_EVERY) */
	__u64 timed;       /* hits timed: prog_ns / timed is the program's time a hit */
	__u64 unwatched;   /* calls entered while the budget had the return points detached */
	__u64 unrecorded;  /* unwatched calls with nothing to record (latency, result conditions) */
	__u64 stepped_hits; /* hits of points the kernel single-steps (priced apart) */
	__u64 head_ns;     /* time on each of the first PSC_TIME_HEAD hits, all timed */
	__u64 head_hits;   /* how many those were */
};

struct psc_pending_key {
	__u64 g;      /* goroutine (R14) */
	__u64 depth;  /* g.stack.hi - SP: survives stack copies, separates recursion */
	__u32 probe;
	__u32 generation; /* psc_probe.generation at the entry: older ones user space harvests */
	__u32 pid;        /* process (tgid): replicas of one program share goroutine addresses */
	__u32 _pad;       /* zero: hash keys compare every byte */
};

/* A probe's counters in one process (PSC_F_PROCS), per CPU: what the budget holds for
 * each process on its own, and what is reported per process. */
struct psc_proc_key {
	__u32 probe;
	__u32 pid;
};

struct psc_proc {
	__u64 hits;      /* as psc_stats.hits */
	__u64 unwatched; /* as psc_stats.unwatched */
	__u64 points;    /* hits of every point (entries, returns, morestack): each a cost */
	__u64 stepped;   /* those of points the kernel single-steps */
};

/* A call site of a probe's function in a process: the return address its calls
 * push (psc_sites' key; the value is 1 once a return point sits after it). */
struct psc_site_key {
	__u32 probe;
	__u32 pid;
	__u64 ret;
};

/* PSC_EV_SITE: its header is psc_event's first four fields. */
struct psc_site_event {
	__u16 version;
	__u16 kind;
	__u32 probe;
	__u32 pid;
	__u32 _pad;
	__u64 ret;
};

/* A goroutine of a process (psc_recovered's key). */
struct psc_g_key {
	__u64 g;
	__u32 pid;
	__u32 _pad;
};

struct psc_pending {
	__u64 ts_ns;
	__u64 goid;
	__u32 tid;
	__u32 bits;      /* results of entry atoms */
	__u32 len;       /* bytes of data[] in use */
	__u32 _pad;
	__s64 stack_id;  /* as in psc_event */
	__u64 caller;
	__u64 outer;     /* as in psc_event */
	__u64 by_value;  /* an entry-section `by` value (its hash for a string) */
	__u32 by_ok;
	__u32 _pad2;
	struct psc_by_name by_name;
	__u8 data[PSC_ENTRY_MAX];
};

#define PSC_EV_CALL 1
#define PSC_EV_SITE 2 /* psc_site_event: a call site seen for the first time */
#define PSC_EVF_ENTRY (1u << 0)
#define PSC_EVF_RET (1u << 1)
#define PSC_EVF_TRUNCATED (1u << 2)
#define PSC_EVF_UNWATCHED (1u << 3) /* entry only: the budget had the return points detached */
#define PSC_EVF_STACK (1u << 4)     /* stack_id and caller are set */

struct psc_event {
	__u16 version;
	__u16 kind;
	__u32 probe;
	__u32 pid;
	__u32 tid;
	__u64 goid;
	__u64 ts_ns;
	__u64 latency_ns;
	__u32 flags;
	__u16 entry_len;
	__u16 ret_len;
	/* The stack at the entry, in psc_stacks (< 0: the kernel's error, e.g. table full),
	 * and the return address at [rsp] there (0 at a call site, where the pc is the
	 * caller's): the kernel's walk misses the immediate caller at some entries. */
	__s64 stack_id;
	__u64 caller;
	/* A stack deeper than psc_stacks holds: its key in psc_outers (0: none). */
	__u64 outer;
};

/* The outer part of a deep stack: how many frames the walk followed (return
 * addresses, from rbp at the probe), whether it stopped at PSC_WALK_MAX before the
 * goroutine's first frame, and the last `n` of them, outermost last. */
struct psc_outer {
	__u32 depth;
	__u32 cut;
	__u32 n;
	__u32 _pad;
	__u64 ips[PSC_OUTER];
};

/* A captured section: registers, a stack window, then items. */
struct psc_section {
	__u64 regs[PSC_NREGS];
	__u16 stack_len;
	__u16 nitems;
	__u32 _pad;
};

#define PSC_ITEM_FAULT 1 /* the pointer chain faulted (nil or unmapped) */

struct psc_item {
	__u16 op;
	__u16 len;
	__u16 flags;
	__u16 _pad;
};

struct psc_hist {
	__u64 buckets[PSC_HIST_BUCKETS];
};

/* What the layouts above and the BPF program rely on. */
_Static_assert(sizeof(struct psc_word) % 8 == 0, "psc_word: 8-byte multiple");
_Static_assert(sizeof(struct psc_op) % 8 == 0, "psc_op: 8-byte multiple");
_Static_assert(sizeof(struct psc_atom) % 8 == 0, "psc_atom: 8-byte multiple");
_Static_assert(sizeof(struct psc_probe) % 8 == 0, "psc_probe: 8-byte multiple");
_Static_assert(sizeof(struct psc_event) % 8 == 0, "events are written at 8-byte offsets");
_Static_assert(sizeof(struct psc_section) % 8 == 0, "sections are written at 8-byte offsets");
_Static_assert(sizeof(struct psc_item) == 8, "items are 8-byte headers");
_Static_assert(sizeof(struct psc_pending_key) == 32, "no padding in a hash key");
_Static_assert((PSC_TIME_EVERY & (PSC_TIME_EVERY - 1)) == 0, "PSC_TIME_EVERY: a power of two");
_Static_assert(PSC_MAX_ATOMS <= 31, "atom results are bits of psc_pending.bits below bit 31");
_Static_assert(PSC_MAX_ATOMS < PSC_PROG_AND, "prog bytes below 0x80 name atoms");
_Static_assert(PSC_MAX_PROBES <= 0xffffffffu, "probe ids fit the cookie's low 32 bits");

#endif
