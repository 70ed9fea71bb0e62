// SPDX-License-Identifier: GPL-2.0
/* One generic uprobe program for every probe periscope attaches. What to read and
 * which condition to test come from the probe's plan in psc_probes (found through the
 * attach cookie), so toggling a probe never compiles or loads new code. */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include "periscope.h"

char LICENSE[] SEC("license") = "GPL";

#define EFLAGS_CF 0x1
#define EFLAGS_ZF 0x40
/* Sections end before this offset so that any single write stays inside the buffer. */
#define SECTION_LIMIT (PSC_SCRATCH / 2 - PSC_MAX_READ - 16)
/* Masks a length in a way clang cannot fold away, so that the verifier sees the bound
 * right at the helper call. */
#define BOUND(x, mask) BOUND_(x, mask)
#define BOUND_(x, mask) ({ __u64 __v = (x); asm volatile("%0 &= " #mask : "+r"(__v)); __v; })
/* The masks, literal for the asm above, each tied to the constant it bounds. */
#define HALF_SCRATCH_MASK 4095 /* an offset into the first half of the scratch buffer */
#define EVENT_MASK 8191        /* an event's length */
#define ENTRY_MASK 2047        /* a stored entry section's length, minus one */
#define READ_MASK 1023         /* one op's read */
#define STACK_MASK 511         /* a stack window */
#define STR_MASK 63            /* a condition's string constant, minus one */
#define OPS_MASK 31            /* an op's index */
#define ATOMS_MASK 7           /* an atom's index */
_Static_assert(HALF_SCRATCH_MASK + 1 == PSC_SCRATCH / 2, "HALF_SCRATCH_MASK");
_Static_assert(EVENT_MASK + 1 == PSC_SCRATCH, "EVENT_MASK");
_Static_assert(ENTRY_MASK + 1 == PSC_ENTRY_MAX, "ENTRY_MASK");
_Static_assert(READ_MASK + 1 >= PSC_MAX_READ, "READ_MASK");
_Static_assert(STACK_MASK + 1 >= PSC_MAX_STACK, "STACK_MASK");
_Static_assert(STR_MASK + 1 == PSC_MAX_STR, "STR_MASK");
_Static_assert(OPS_MASK + 1 >= PSC_MAX_OPS, "OPS_MASK");
_Static_assert(ATOMS_MASK + 1 == PSC_MAX_ATOMS, "ATOMS_MASK");
_Static_assert(SECTION_LIMIT + PSC_MAX_READ + sizeof(struct psc_item) <= HALF_SCRATCH_MASK + 1,
	       "an item written below SECTION_LIMIT stays in its half of the buffer");
#define PENDING_AGE_NS (60ull * 1000 * 1000 * 1000)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PSC_MAX_PROBES);
	__type(key, __u32);
	__type(value, struct psc_probe);
} psc_probes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PSC_MAX_PROBES);
	__type(key, __u32);
	__type(value, struct psc_stats);
} psc_stats SEC(".maps");

/* One latency histogram per probe, shared by every CPU (atomic adds): a per-CPU one
 * is 5 MB per CPU for 512 probes, 320 MB of kernel memory on a 64-CPU server. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PSC_MAX_PROBES);
	__type(key, __u32);
	__type(value, struct psc_hist);
} psc_hist SEC(".maps");

/* Calls in flight: a call that panics never reaches a RET, so the map is an LRU and
 * entries older than PENDING_AGE_NS are ignored. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct psc_pending_key);
	__type(value, struct psc_pending);
} psc_pending SEC(".maps");

/* `--by`: a latency histogram per probe and value (NO_PREALLOC: 10 KB values, few
 * in use), how many values each probe has, the names of string values, and a zeroed
 * histogram to create entries from. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2048);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct psc_by_key);
	__type(value, struct psc_hist);
} psc_by_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PSC_MAX_PROBES);
	__type(key, __u32);
	__type(value, __u32);
} psc_by_count SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2048);
	__type(key, struct psc_by_key);
	__type(value, struct psc_by_name);
} psc_by_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct psc_hist);
} psc_zero_hist SEC(".maps");

/* Callers' stacks, deduplicated by the kernel: an event carries an id. */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, PSC_STACKS);
	__type(key, __u32);
	__uint(value_size, PSC_STACK_DEPTH * sizeof(__u64));
} psc_stacks SEC(".maps");

/* Calls an entry condition rejected, while their return probe is still to come: the
 * RET then knows the call was counted (filtered) and is not an unpaired return. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct psc_pending_key);
	__type(value, __u64);
} psc_filtered SEC(".maps");

/* When each goroutine last recovered a panic (runtime.recovery): its frames below the
 * deferring one were unwound without returning, so an entry stored before then may
 * belong to a frame that is gone. A return point that other paths reach too (a
 * shared one) must not pair a branch's hit with such an entry: entries older than
 * their goroutine's last recovery end there as unwatched. (Rarely one still in flight
 * in an outer frame is ended too: unwatched, never a wrong latency.) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct psc_g_key);
	__type(value, __u64);
} psc_recovered SEC(".maps");

/* The call sites of PSC_F_SITES probes, by the return address their calls push: 0
 * while no return point sits after one (user space is told once, PSC_EV_SITE), 1 once
 * one does. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PSC_SITES);
	__type(key, struct psc_site_key);
	__type(value, __u32);
} psc_sites SEC(".maps");

/* Each probe's counters per process, for a program of several (PSC_F_PROCS). A pair
 * that finds the table full is counted in the probe's totals only: the processes'
 * counts then add up to less than the program's. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, PSC_PROCS);
	__type(key, struct psc_proc_key);
	__type(value, struct psc_proc);
} psc_procs SEC(".maps");

#define G_SPAN_MASK 255 /* bytes of runtime.g read at once: stack.hi up to goid */

/* A walk up a goroutine's frame pointers, one frame per bpf_loop step: each frame
 * record is {caller's rbp, return address}, at increasing addresses below the
 * goroutine's stack top. */
struct walk {
	__u64 fp;
	__u64 hi;
	__u64 frame[2];
	__u32 done;
	__u32 _pad;
};

struct scratch {
	__u8 buf[PSC_SCRATCH];
	struct psc_pending pending;
	__u8 g[G_SPAN_MASK + 1 + 8];
	struct psc_outer outer;
	struct walk walk;
	/* Keys and a small event, here rather than on the stack: older kernels' verifiers
	 * (6.1) count the stack of every inlined frame against 512 bytes. */
	struct psc_pending_key pkey;
	struct psc_site_key site;
	struct psc_site_event site_ev;
	struct psc_g_key gk;
	/* The probe's hits and unwatched before this hit (PSC_F_PROCS). */
	__u64 hits0, unwatched0;
	__u32 no;
};

/* Deep stacks' outer parts, by a hash of what they hold. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PSC_OUTERS);
	__type(key, __u64);
	__type(value, struct psc_outer);
} psc_outers SEC(".maps");
_Static_assert((PSC_OUTER & (PSC_OUTER - 1)) == 0, "PSC_OUTER: a power of two");
_Static_assert(PSC_OUTER * 8 <= G_SPAN_MASK + 1, "a ring of outer frames fits in scratch.g");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} psc_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} psc_events SEC(".maps");

/* The registers of the hit, copied once: the verifier rejects ctx loads at computed
 * offsets, which is what a switch over ctx fields compiles to. */
struct frame {
	__u64 regs[PSC_NREGS];
	__u64 rsp;
	__u64 latency; /* at a return: the call's latency, for LATENCY atoms */
};

/* `sp_adjust`: at a call site the callee's frame starts 8 bytes lower (the return
 * address is not pushed yet), and after it returns 8 bytes higher than at its RET: the
 * frame's RSP is the callee's as at its entry or RET, so plans and pairing are one. */
static __always_inline void load_frame(struct frame *f, struct pt_regs *ctx, __u64 sp_adjust)
{
	f->regs[0] = ctx->rax;
	f->regs[1] = ctx->rbx;
	f->regs[2] = ctx->rcx;
	f->regs[3] = ctx->rdi;
	f->regs[4] = ctx->rsi;
	f->regs[5] = ctx->r8;
	f->regs[6] = ctx->r9;
	f->regs[7] = ctx->r10;
	f->regs[8] = ctx->r11;
	f->rsp = ctx->rsp - sp_adjust;
	f->latency = 0;
}

static __always_inline __u64 mask_width(__u64 v, __u8 width)
{
	switch (width) {
	case 1: return v & 0xff;
	case 2: return v & 0xffff;
	case 4: return v & 0xffffffff;
	}
	return v;
}

static __always_inline int read_width(__u64 *out, __u64 addr, __u8 width)
{
	*out = 0;
	switch (width) {
	case 1: return bpf_probe_read_user(out, 1, (void *)addr);
	case 2: return bpf_probe_read_user(out, 2, (void *)addr);
	case 4: return bpf_probe_read_user(out, 4, (void *)addr);
	}
	return bpf_probe_read_user(out, 8, (void *)addr);
}

/* Evaluates a word; *ok becomes 0 when a load faults. */
/* Global (not static) functions are verified once, not at every call site. */
__noinline __u64 eval_word(const struct frame *f, const struct psc_word *w, int *ok)
{
	__u64 v = 0;
	if (!f || !w || !ok)
		return 0;
	__u8 n = w->nderef;
	if (w->base == PSC_BASE_REG) {
		__u8 r = w->reg;
		if (r >= PSC_NREGS) {
			*ok = 0;
			return 0;
		}
		v = f->regs[r];
	} else if (w->base == PSC_BASE_STACK) {
		if (bpf_probe_read_user(&v, 8, (void *)(f->rsp + w->stack_off))) {
			*ok = 0;
			return 0;
		}
	} else {
		*ok = 0;
		return 0;
	}
	if (n == 0)
		return mask_width(v, w->width);
	for (int i = 0; i < PSC_MAX_PATH; i++) {
		if (i >= n)
			break;
		__u64 addr = v + (__s64)w->path[i];
		if (v == 0 || read_width(&v, addr, i == n - 1 ? w->width : 8)) {
			*ok = 0;
			return 0;
		}
	}
	return v;
}

static __always_inline __s64 sign_extend(__u64 v, __u8 width)
{
	switch (width) {
	case 1: return (__s8)v;
	case 2: return (__s16)v;
	case 4: return (__s32)v;
	}
	return (__s64)v;
}

/* A float32's or float64's bits mapped so that unsigned order is the floats' order:
 * negatives (sign set) reversed below the positives, -0 as 0. *nan for a NaN, which Go
 * finds unequal to everything, itself included. Compiled constants go through the
 * same mapping in user space (condition/compile.rs: float_key). */
static __always_inline __u64 float_key(__u64 bits, __u8 width, int *nan)
{
	if (width == 4) {
		__u32 b = (__u32)bits;
		*nan = (b & 0x7fffffff) > 0x7f800000;
		if ((b & 0x7fffffff) == 0)
			b = 0;
		return (b >> 31) ? (__u32)~b : (b | 0x80000000u);
	}
	*nan = (bits & 0x7fffffffffffffffull) > 0x7ff0000000000000ull;
	if ((bits << 1) == 0)
		bits = 0;
	return (bits >> 63) ? ~bits : (bits | (1ull << 63));
}

/* An unsigned comparison by its psc_cmp: latencies, unsigned integers, float keys. */
static __always_inline int cmp_u64(__u8 cmp, __u64 v, __u64 c)
{
	switch (cmp) {
	case PSC_EQ: return v == c;
	case PSC_NE: return v != c;
	case PSC_LT: return v < c;
	case PSC_LE: return v <= c;
	case PSC_GT: return v > c;
	case PSC_GE: return v >= c;
	}
	return 0;
}

__noinline int eval_atom(const struct frame *f, const struct psc_atom *a)
{
	int ok = 1, r = 0;
	if (!f || !a)
		return 0;
	if (a->kind == PSC_ATOM_LATENCY)
		return cmp_u64(a->cmp, f->latency, (__u64)a->value);
	__u64 v = eval_word(f, &a->a, &ok);
	if (a->kind == PSC_ATOM_FLOAT) {
		/* No floating point here: compare order-preserving keys of the bits. */
		if (!ok)
			return 0;
		int nan;
		__u64 key = float_key(v, a->a.width, &nan);
		if (nan)
			return a->cmp == PSC_NE;
		return cmp_u64(a->cmp, key, (__u64)a->value);
	}
	if (a->kind == PSC_ATOM_INT) {
		if (!ok && (a->is_signed & PSC_ATOM_NIL_IS_ZERO))
			v = 0;
		else if (!ok)
			return 0;
		if (a->is_signed & 1) {
			__s64 x = sign_extend(v, a->a.width), c = a->value;
			switch (a->cmp) {
			case PSC_EQ: return x == c;
			case PSC_NE: return x != c;
			case PSC_LT: return x < c;
			case PSC_LE: return x <= c;
			case PSC_GT: return x > c;
			case PSC_GE: return x >= c;
			}
			return 0;
		}
		return cmp_u64(a->cmp, v, (__u64)a->value);
	}
	/* Strings: compare the length first, then at most PSC_MAX_STR bytes. */
	__u64 len = eval_word(f, &a->b, &ok);
	__u32 want = a->str_len;
	if (a->kind == PSC_ATOM_STR_ORDER) {
		/* Byte-wise, as Go orders strings: the first differing byte, else the
		 * shorter string first. Only min(len, want) bytes need reading. */
		if (!ok || want > PSC_MAX_STR)
			return 0;
		__u32 n = len < want ? (__u32)len : want;
		int c = 0;
		if (n) {
			__u8 tmp[PSC_MAX_STR] = {};
			if (bpf_probe_read_user(tmp, BOUND(n - 1, STR_MASK) + 1, (void *)v))
				return 0;
			for (int i = 0; i < PSC_MAX_STR; i++) {
				if (i >= n)
					break;
				if (tmp[i] != a->str[i]) {
					c = tmp[i] < a->str[i] ? -1 : 1;
					break;
				}
			}
		}
		if (c == 0)
			c = len < want ? -1 : (len > want ? 1 : 0);
		switch (a->cmp) {
		case PSC_EQ: return c == 0;
		case PSC_NE: return c != 0;
		case PSC_LT: return c < 0;
		case PSC_LE: return c <= 0;
		case PSC_GT: return c > 0;
		case PSC_GE: return c >= 0;
		}
		return 0;
	}
	if (!ok || want > PSC_MAX_STR)
		r = 0;
	else if (a->kind == PSC_ATOM_STR_EQ && len != want)
		r = 0;
	else if (len < want)
		r = 0;
	else if (want == 0)
		r = 1;
	else {
		__u8 tmp[PSC_MAX_STR] = {};
		if (bpf_probe_read_user(tmp, BOUND(want - 1, STR_MASK) + 1, (void *)v))
			return a->cmp == PSC_NE;
		r = 1;
		for (int i = 0; i < PSC_MAX_STR; i++) {
			if (i >= want)
				break;
			if (tmp[i] != a->str[i]) {
				r = 0;
				break;
			}
		}
	}
	return a->cmp == PSC_NE ? !r : r;
}

struct atom_ctx {
	const struct frame *f;
	struct psc_probe *p;
	__u32 section;
	__u32 bits;
};

static long atom_step(__u32 i, void *data)
{
	struct atom_ctx *c = data;
	__u32 idx = BOUND(i, ATOMS_MASK);
	if (idx >= c->p->natoms)
		return 1;
	if (c->p->atoms[idx].section == c->section && eval_atom(c->f, &c->p->atoms[idx]))
		c->bits |= 1u << idx;
	return 0;
}

static __always_inline __u32 eval_atoms(const struct frame *f, struct psc_probe *p, __u32 section)
{
	struct atom_ctx c = {.f = f, .p = p, .section = section};
	bpf_loop(PSC_MAX_ATOMS, atom_step, &c, 0);
	return c.bits;
}

static __always_inline int run_prog(const __u8 *prog, __u32 bits)
{
	__u32 stack = 0;
	for (int i = 0; i < PSC_MAX_PROG; i++) {
		__u8 ins = prog[i];
		if (ins == PSC_PROG_END)
			break;
		if (ins < 0x80) {
			stack = (stack << 1) | ((bits >> (ins & 31)) & 1);
		} else if (ins == PSC_PROG_NOT) {
			stack ^= 1;
		} else {
			__u32 a = stack & 1, b = (stack >> 1) & 1;
			stack >>= 2;
			stack = (stack << 1) | (ins == PSC_PROG_AND ? (a & b) : (a | b));
		}
	}
	return stack & 1;
}

__noinline int eval_prog(const struct psc_probe *p, __u32 bits)
{
	if (!p)
		return 0;
	return run_prog(p->prog, bits);
}

/* A `by` value read at the probe point: the integer, or an FNV-1a hash of the string's
 * first PSC_BY_STR_LEN bytes (kept in `name` to be named in user space). */
__noinline int by_read(const struct frame *f, const struct psc_probe *p, __u64 *out, struct psc_by_name *name)
{
	int ok = 1;
	if (!f || !p || !out || !name)
		return 0;
	__u64 v = eval_word(f, &p->by.a, &ok);
	if (!ok)
		return 0;
	if (p->by.kind == PSC_BY_INT) {
		*out = p->by.is_signed ? (__u64)sign_extend(v, p->by.a.width) : v;
		return 1;
	}
	__u64 len = eval_word(f, &p->by.b, &ok);
	if (!ok)
		return 0;
	__u32 n = len < PSC_BY_STR_LEN ? (__u32)len : PSC_BY_STR_LEN;
	name->len = n;
	if (n && bpf_probe_read_user(name->str, BOUND(n - 1, 31) + 1, (void *)v))
		return 0;
	__u64 h = 0xcbf29ce484222325ull;
	for (int i = 0; i < PSC_BY_STR_LEN; i++) {
		if (i >= n)
			break;
		h = (h ^ name->str[i]) * 0x100000001b3ull;
	}
	*out = h ^ len;
	return 1;
}

#define SECTION_TRUNCATED 0x80000000u

struct sec_ctx {
	const struct frame *f;
	struct psc_probe *p;
	__u8 *buf;
	__u32 pos;
	__u32 sec;
	__u32 nitems;
	__u32 trunc;
};

/* One capture op; run through bpf_loop so the verifier checks the body once. */
static long op_step(__u32 i, void *data)
{
	struct sec_ctx *c = data;
	struct psc_probe *p = c->p;
	__u8 *buf = c->buf;
	__u32 idx = BOUND(i, OPS_MASK);
	if (idx >= PSC_MAX_OPS || idx >= p->nops)
		return 1;
	struct psc_op *op = &p->ops[idx];
	if (op->section != c->sec)
		return 0;
	__u32 pos = c->pos;
	if (pos > SECTION_LIMIT) {
		c->trunc = SECTION_TRUNCATED;
		return 1;
	}
	int ok = 1;
	__u64 ptr = eval_word(c->f, &op->ptr, &ok);
	__u32 n = op->size;
	if (op->kind == PSC_OP_COUNTED) {
		__u64 cnt = eval_word(c->f, &op->len, &ok);
		if (cnt < 0x100000 && cnt * op->elem < n)
			n = cnt * op->elem;
	}
	if (n > PSC_MAX_READ)
		n = PSC_MAX_READ;
	__u16 flags = 0;
	if (!ok || (ptr == 0 && n)) {
		flags = PSC_ITEM_FAULT;
		n = 0;
	} else if (n) {
		if (bpf_probe_read_user(buf + BOUND(pos + sizeof(struct psc_item), HALF_SCRATCH_MASK), BOUND(n, READ_MASK), (void *)ptr)) {
			flags = PSC_ITEM_FAULT;
			n = 0;
		}
	}
	struct psc_item *it = (void *)(buf + BOUND(pos, HALF_SCRATCH_MASK));
	it->op = i;
	it->len = n;
	it->flags = flags;
	it->_pad = 0;
	c->pos = pos + sizeof(struct psc_item) + ((n + 7) & ~7u);
	c->nitems++;
	return 0;
}

/* Writes a section (registers, stack window, items) at buf[start]; returns its size,
 * with SECTION_TRUNCATED set when items did not fit. */
__noinline __u32 build_section(const struct frame *f, struct psc_probe *p, __u32 sec, struct scratch *sc, __u32 start)
{
	if (!f || !p || !sc)
		return 0;
	__u8 *buf = sc->buf;
	__u32 pos = BOUND(start, HALF_SCRATCH_MASK);
	if (pos > SECTION_LIMIT)
		return 0;
	struct psc_section *s = (void *)(buf + pos);
	for (int i = 0; i < PSC_NREGS; i++)
		s->regs[i] = f->regs[i];
	s->_pad = 0;
	__u32 slen = sec == PSC_SEC_ENTRY ? p->entry_stack_len : p->ret_stack_len;
	__u32 soff = sec == PSC_SEC_ENTRY ? p->entry_stack_off : p->ret_stack_off;
	if (slen > PSC_MAX_STACK)
		slen = PSC_MAX_STACK;
	pos += sizeof(struct psc_section);
	if (slen) {
		if (bpf_probe_read_user(buf + BOUND(pos, HALF_SCRATCH_MASK), BOUND(slen, STACK_MASK), (void *)(f->rsp + soff)))
			slen = 0;
	}
	pos += (slen + 7) & ~7u;
	struct sec_ctx c = {.f = f, .p = p, .buf = buf, .pos = pos, .sec = sec};
	bpf_loop(PSC_MAX_OPS, op_step, &c, 0);
	s = (void *)(buf + BOUND(start, HALF_SCRATCH_MASK));
	s->stack_len = slen;
	s->nitems = c.nitems;
	return (c.pos - start) | c.trunc;
}

/* A bucket index clamped to the histogram, in the very register the access then uses:
 * 6.1's verifier loses a bound that clang checks on a copy (a zero-extended 32-bit
 * index), and rejects the access as unbounded. */
#define CLAMP_BUCKET(x) ({ __u64 __v = (x); asm volatile("if %0 <= %1 goto +1; %0 = %1" : "+r"(__v) : "i"(PSC_HIST_BUCKETS - 1)); __v; })

static __always_inline __u32 hist_bucket(__u64 v)
{
	if (v < 64)
		return v;
	__u32 e = 0;
	__u64 x = v;
	if (x >> 32) { x >>= 32; e += 32; }
	if (x >> 16) { x >>= 16; e += 16; }
	if (x >> 8) { x >>= 8; e += 8; }
	if (x >> 4) { x >>= 4; e += 4; }
	if (x >> 2) { x >>= 2; e += 2; }
	if (x >> 1) { e += 1; }
	__u32 shift = e - 5;
	__u32 idx = 64 + (e - 6) * 32 + ((v >> shift) & 31);
	return idx;
}

/* Adds a latency to the histogram of (probe, value); past PSC_BY_VALUES values a
 * probe's new ones go to its "other" histogram. */
static __always_inline void by_record(__u32 id, __u64 value, const struct psc_by_name *name, __u64 latency)
{
	struct psc_by_key k = {.probe = id, .flags = 0, .value = value};
	struct psc_hist *h = bpf_map_lookup_elem(&psc_by_hist, &k);
	if (!h) {
		__u32 zero = 0;
		__u32 *count = bpf_map_lookup_elem(&psc_by_count, &id);
		struct psc_hist *z = bpf_map_lookup_elem(&psc_zero_hist, &zero);
		if (!count || !z)
			return;
		if (*count >= PSC_BY_VALUES) {
			k.flags = PSC_BY_OTHER_FLAG;
			k.value = 0;
		} else if (bpf_map_update_elem(&psc_by_hist, &k, z, BPF_NOEXIST) == 0) {
			__sync_fetch_and_add(count, 1);
			if (name)
				bpf_map_update_elem(&psc_by_names, &k, name, BPF_ANY);
		}
		h = bpf_map_lookup_elem(&psc_by_hist, &k);
		if (!h && k.flags == PSC_BY_OTHER_FLAG && bpf_map_update_elem(&psc_by_hist, &k, z, BPF_NOEXIST) == 0)
			h = bpf_map_lookup_elem(&psc_by_hist, &k);
		if (!h)
			return;
	}
	__u64 b = CLAMP_BUCKET(hist_bucket(latency));
	__sync_fetch_and_add(&h->buckets[b], 1);
}


static __always_inline int keep_sample(struct psc_probe *p, struct psc_stats *st)
{
	__u64 seq = st->matched++;
	if (p->sample_every > 1 && seq % p->sample_every != 0) {
		st->sampled_out++;
		return 0;
	}
	return 1;
}

static __always_inline void emit(struct scratch *sc, __u32 len, struct psc_stats *st)
{
	if (len > PSC_SCRATCH / 2)
		len = PSC_SCRATCH / 2;
	/* No wakeup per event (~6 µs each here): user space drains on a short timer. */
	if (bpf_ringbuf_output(&psc_events, sc->buf, BOUND(len, EVENT_MASK), BPF_RB_NO_WAKEUP))
		st->lost++;
	else
		st->emitted++;
}

static __always_inline void fill_header(struct psc_event *ev, __u32 id, __u64 goid, __u32 tid)
{
	ev->version = PSC_VERSION;
	ev->kind = PSC_EV_CALL;
	ev->probe = id;
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	ev->tid = tid;
	ev->goid = goid;
}

/* A read of the target's memory costs ~150 ns here, more than anything else the
 * program does: a paired call's goroutine id and stack top (both in runtime.g) are
 * read in one, and a call the condition drops reads no id. */
static __always_inline int read_goid_hi(__u64 g, const struct psc_probe *p, struct scratch *sc, __u64 *goid, __u64 *hi)
{
	__u32 lo = p->stack_hi_off, top = p->goid_off + 8;
	if (p->goid_off > lo && top - lo <= G_SPAN_MASK + 1) {
		__u32 span = top - lo;
		if (bpf_probe_read_user(sc->g, BOUND(span - 1, G_SPAN_MASK) + 1, (void *)(g + lo)))
			return -1;
		*hi = *(__u64 *)sc->g;
		*goid = *(__u64 *)(sc->g + BOUND(span - 8, G_SPAN_MASK));
		return 0;
	}
	if (bpf_probe_read_user(hi, 8, (void *)(g + p->stack_hi_off)))
		return -1;
	bpf_probe_read_user(goid, 8, (void *)(g + p->goid_off));
	return 0;
}

static long walk_frame(__u32 i, void *ctx)
{
	/* The walk's state lives in the scratch map, not on the stack: the program's
	 * stack is nearly full, and a callback's frame counts on top of it. */
	__u32 zero = 0;
	struct scratch *sc = bpf_map_lookup_elem(&psc_scratch, &zero);
	if (!sc)
		return 1;
	struct walk *w = &sc->walk;
	struct psc_outer *o = &sc->outer;
	if (w->fp + 16 > w->hi || bpf_probe_read_user(w->frame, 16, (void *)w->fp)) {
		w->done = 1;
		return 1;
	}
	o->ips[o->depth & (PSC_OUTER - 1)] = w->frame[1];
	o->depth++;
	if (w->frame[0] <= w->fp) {
		w->done = 1;
		return 1;
	}
	w->fp = w->frame[0];
	return 0;
}

/* A stack deeper than psc_stacks keeps (the kernel's walk stops at PSC_STACK_DEPTH
 * frames, innermost first): walks it to its goroutine's first frame, keeps the
 * outermost PSC_OUTER frames and the count in psc_outers, and returns their key
 * (0: not deeper, or not walked). The kernel's own check comes first: a second
 * stack read that skips what psc_stacks holds finds nothing on a shallow stack, at
 * the cost of the kernel's walk, far less than this one. */
static __always_inline __u64 outer_of(struct pt_regs *ctx, __u64 g, const struct psc_probe *p, struct scratch *sc)
{
	if (bpf_get_stack(ctx, sc->g, 8, BPF_F_USER_STACK | (PSC_STACK_DEPTH & BPF_F_SKIP_FIELD_MASK)) <= 0)
		return 0;
	__u64 hi = 0;
	if (bpf_probe_read_user(&hi, 8, (void *)(g + p->stack_hi_off)))
		return 0;
	struct psc_outer *o = &sc->outer;
	o->depth = 0;
	o->_pad = 0;
	struct walk *w = &sc->walk;
	w->fp = ctx->rbp;
	w->hi = hi;
	w->done = 0;
	if (w->fp < ctx->rsp)
		return 0;
	bpf_loop(PSC_WALK_MAX, walk_frame, NULL, 0);
	__u32 depth = o->depth;
	o->cut = !w->done;
	o->n = depth < PSC_OUTER ? depth : PSC_OUTER;
	/* Outermost last: the ring rotated so that its oldest frame comes first (through
	 * sc->g, free until the goroutine id is read: the program's stack is full). */
	__u64 *ring = (__u64 *)sc->g;
	for (int i = 0; i < PSC_OUTER; i++)
		ring[i] = o->ips[i];
	__u32 first = depth < PSC_OUTER ? 0 : depth;
	__u64 key = 14695981039346656037ull ^ depth ^ ((__u64)o->cut << 32);
	for (int i = 0; i < PSC_OUTER; i++) {
		__u64 ip = i < o->n ? ring[(first + i) & (PSC_OUTER - 1)] : 0;
		o->ips[i] = ip;
		key = (key ^ ip) * 1099511628211ull;
	}
	key |= 1;
	bpf_map_update_elem(&psc_outers, &key, o, BPF_ANY);
	return key;
}

/* A call's key in psc_pending, in the scratch map (older verifiers count every byte of
 * stack; see struct scratch). */
static __always_inline struct psc_pending_key *pending_key(struct scratch *sc, __u64 g, __u64 depth, __u32 id, __u32 generation, __u32 pid)
{
	struct psc_pending_key *k = &sc->pkey;
	k->g = g;
	k->depth = depth;
	k->probe = id;
	k->generation = generation;
	k->pid = pid;
	k->_pad = 0;
	return k;
}

/* Whether a return point sits after the call site this call came from ([rsp] at the
 * function's entry is the address it returns to); a site seen for the first time is
 * recorded and user space told. */
static __always_inline int site_covered(struct pt_regs *ctx, __u32 id, struct scratch *sc)
{
	struct psc_site_key *sk = &sc->site;
	sk->probe = id;
	sk->pid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_probe_read_user(&sk->ret, 8, (void *)ctx->rsp))
		return 0;
	__u32 *covered = bpf_map_lookup_elem(&psc_sites, sk);
	if (covered)
		return *covered;
	sc->no = 0;
	if (bpf_map_update_elem(&psc_sites, sk, &sc->no, BPF_NOEXIST) == 0) {
		struct psc_site_event *se = &sc->site_ev;
		se->version = PSC_VERSION;
		se->kind = PSC_EV_SITE;
		se->probe = id;
		se->pid = sk->pid;
		se->_pad = 0;
		se->ret = sk->ret;
		bpf_ringbuf_output(&psc_events, se, sizeof(*se), 0);
	}
	return 0;
}

static __always_inline int on_entry(struct pt_regs *ctx, const struct frame *f, struct psc_probe *p, __u32 id, struct psc_stats *st, struct scratch *sc, int at_call)
{
	__u64 g = ctx->r14, goid = 0, hi = 0;
	st->hits++;
	__u32 bits = 0;
	/* The budget has this probe's return points detached: the call is seen at its
	 * entry only (arguments, counts, entry conditions), and says so. */
	int unwatched = (p->flags & PSC_F_PAIRED) && (p->flags & PSC_F_WINDOWED) && !(p->flags & PSC_F_WATCHING);
	/* Returns seen after the call sites in use: a call from a site without a return
	 * point yet is seen at its entry only, and its site is asked for. */
	/* (Learnt whether or not the returns are attached now: the budget may hold back a
	 * costly function's RETs from the start.) */
	if ((p->flags & PSC_F_SITES) && !at_call && !site_covered(ctx, id, sc) && (p->flags & PSC_F_SITES_ONLY))
		unwatched = 1;
	if (unwatched)
		st->unwatched++;
	if (p->natoms)
		bits = eval_atoms(f, p, PSC_SEC_ENTRY);
	if (p->flags & PSC_F_COND) {
		if (!(p->flags & PSC_F_COND_RET) && !eval_prog(p, bits)) {
			st->filtered++;
			if ((p->flags & PSC_F_PAIRED) && !unwatched && !bpf_probe_read_user(&hi, 8, (void *)(g + p->stack_hi_off))) {
				struct psc_pending_key *fk = pending_key(sc, g, hi - f->rsp, id, p->generation, bpf_get_current_pid_tgid() >> 32);
				__u64 ts = bpf_ktime_get_ns();
				bpf_map_update_elem(&psc_filtered, fk, &ts, BPF_ANY);
			}
			return 0;
		}
	}
	if (unwatched) {
		/* Nothing to record without the return: a latency, or a condition on results. */
		if (!(p->flags & PSC_F_EVENTS) || (p->flags & PSC_F_COND_RET)) {
			st->unrecorded++;
			return 0;
		}
		if (!keep_sample(p, st))
			return 0;
	} else if (!(p->flags & PSC_F_COND_RET) && !(p->flags & PSC_F_LATENCY) && !keep_sample(p, st)) {
		/* With a condition on results the sampling decision waits for the RET. */
		return 0;
	}
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u32 truncated = 0, len = 0;
	/* Only calls that are kept pay for a stack walk. */
	__s64 stack_id = 0;
	__u64 caller = 0, outer = 0;
	if (p->flags & PSC_F_STACK) {
		stack_id = bpf_get_stackid(ctx, &psc_stacks, BPF_F_USER_STACK);
		if (!at_call)
			bpf_probe_read_user(&caller, 8, (void *)ctx->rsp);
		if (stack_id >= 0)
			outer = outer_of(ctx, g, p, sc);
	}
	struct psc_event *ev = (void *)sc->buf;
	if (p->flags & PSC_F_EVENTS) {
		len = build_section(f, p, PSC_SEC_ENTRY, sc, sizeof(struct psc_event));
		truncated = len >> 31;
		len &= ~SECTION_TRUNCATED;
	}
	if (!(p->flags & PSC_F_PAIRED) || unwatched) {
		bpf_probe_read_user(&goid, 8, (void *)(g + p->goid_off));
		fill_header(ev, id, goid, tid);
		ev->ts_ns = bpf_ktime_get_ns();
		ev->latency_ns = 0;
		ev->flags = PSC_EVF_ENTRY | (truncated ? PSC_EVF_TRUNCATED : 0) | (unwatched ? PSC_EVF_UNWATCHED : 0) |
			    ((p->flags & PSC_F_STACK) ? PSC_EVF_STACK : 0);
		ev->entry_len = len;
		ev->ret_len = 0;
		ev->stack_id = stack_id;
		ev->caller = caller;
		ev->outer = outer;
		emit(sc, sizeof(struct psc_event) + len, st);
		return 0;
	}
	if (read_goid_hi(g, p, sc, &goid, &hi))
		return 0;
	struct psc_pending_key *key = pending_key(sc, g, hi - f->rsp, id, p->generation, bpf_get_current_pid_tgid() >> 32);
	struct psc_pending *pd = &sc->pending;
	if (len > PSC_ENTRY_MAX) {
		len = 0;
		truncated = 1;
	}
	if (len)
		bpf_probe_read_kernel(pd->data, BOUND(len - 1, ENTRY_MASK) + 1, sc->buf + sizeof(struct psc_event));
	pd->len = len;
	pd->bits = bits | (truncated ? 0x80000000u : 0);
	pd->goid = goid;
	pd->tid = tid;
	pd->stack_id = stack_id;
	pd->caller = caller;
	pd->outer = outer;
	pd->by_ok = 0;
	if ((p->flags & PSC_F_BY) && (p->by.kind == PSC_BY_INT || p->by.kind == PSC_BY_STR) && p->by.section == PSC_SEC_ENTRY)
		pd->by_ok = by_read(f, p, &pd->by_value, &pd->by_name);
	pd->ts_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&psc_pending, key, pd, BPF_ANY);
	return 0;
}

/* At a shared return point: whether the entry found can be this frame's call. A goroutine
 * that ended and whose g was reused has another id; one that recovered a panic since
 * the entry may have lost the entry's frame. */
static __always_inline int entry_is_live(__u64 g, __u32 pid, const struct psc_probe *p, const struct psc_pending *pd, struct scratch *sc)
{
	struct psc_g_key *gk = &sc->gk;
	/* (gk.g holds the goroutine id a moment, then the goroutine.) */
	if (bpf_probe_read_user(&gk->g, 8, (void *)(g + p->goid_off)) || gk->g != pd->goid)
		return 0;
	gk->g = g;
	gk->pid = pid;
	gk->_pad = 0;
	__u64 *recovered = bpf_map_lookup_elem(&psc_recovered, gk);
	return !recovered || *recovered < pd->ts_ns;
}

static __always_inline int on_return(struct pt_regs *ctx, struct frame *f, struct psc_probe *p, __u32 id, struct psc_stats *st, struct scratch *sc, int shared)
{
	__u64 now = bpf_ktime_get_ns(), g = ctx->r14, hi = 0;
	if (bpf_probe_read_user(&hi, 8, (void *)(g + p->stack_hi_off)))
		return 0;
	/* Only an entry of the current generation: one from before the return points were
	 * last detached may belong to a call whose return was missed (user space counts
	 * those as unwatched), and pairing it with this return would time several calls. */
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct psc_pending_key *key = pending_key(sc, g, hi - f->rsp, id, p->generation, pid);
	struct psc_pending *pd = bpf_map_lookup_elem(&psc_pending, key);
	if (!pd || now - pd->ts_ns > PENDING_AGE_NS) {
		if (pd)
			bpf_map_delete_elem(&psc_pending, key);
		/* The return of a call its entry condition rejected: counted already. */
		if ((p->flags & PSC_F_COND) && bpf_map_delete_elem(&psc_filtered, key) == 0)
			return 0;
		/* Another path through a shared point: not a return, and expected. */
		if (!shared)
			st->unpaired++;
		return 0;
	}
	if (shared && !entry_is_live(g, pid, p, pd, sc)) {
		/* Its return was never seen (its frame was unwound): entered, unwatched. */
		bpf_map_delete_elem(&psc_pending, key);
		st->unwatched++;
		st->unrecorded++;
		return 0;
	}
	/* Less the probe's own time between the two clock reads (calibrated), never below 0. */
	__u64 latency = now - pd->ts_ns;
	latency = latency > p->latency_floor_ns ? latency - p->latency_floor_ns : 0;
	f->latency = latency;
	if (p->flags & PSC_F_COND_RET) {
		__u32 bits = (pd->bits & 0x7fffffff) | eval_atoms(f, p, PSC_SEC_RET);
		if (!eval_prog(p, bits)) {
			st->filtered++;
			bpf_map_delete_elem(&psc_pending, key);
			return 0;
		}
	}
	st->returns++;
	if (p->flags & PSC_F_LATENCY) {
		struct psc_hist *h = bpf_map_lookup_elem(&psc_hist, &id);
		if (h) {
			__u64 b = CLAMP_BUCKET(hist_bucket(latency));
			__sync_fetch_and_add(&h->buckets[b], 1);
		}
	}
	if (p->flags & PSC_F_BY) {
		__u64 v = 0;
		int ok = 0;
		struct psc_by_name nm = {};
		const struct psc_by_name *name = 0;
		if (p->by.kind == PSC_BY_BOOL) {
			__u32 bits = (pd->bits & 0x7fffffff) | eval_atoms(f, p, PSC_SEC_RET);
			v = run_prog(p->by.prog, bits);
			ok = 1;
		} else if (p->by.kind == PSC_BY_PID) {
			v = bpf_get_current_pid_tgid() >> 32;
			ok = 1;
		} else if (p->by.section == PSC_SEC_ENTRY) {
			v = pd->by_value;
			ok = pd->by_ok;
			name = &pd->by_name;
		} else {
			ok = by_read(f, p, &v, &nm);
			name = &nm;
		}
		if (ok)
			by_record(id, v, p->by.kind == PSC_BY_STR ? name : 0, latency);
	}
	if (!(p->flags & PSC_F_EVENTS)) {
		/* Latency only: the histogram entry is the record of this call. */
		st->emitted++;
		bpf_map_delete_elem(&psc_pending, key);
		return 0;
	}
	if (!keep_sample(p, st)) {
		bpf_map_delete_elem(&psc_pending, key);
		return 0;
	}
	struct psc_event *ev = (void *)sc->buf;
	__u32 elen = pd->len;
	if (elen > PSC_ENTRY_MAX)
		elen = 0;
	if (elen)
		bpf_probe_read_kernel(sc->buf + sizeof(struct psc_event), BOUND(elen - 1, ENTRY_MASK) + 1, pd->data);
	__u32 truncated = pd->bits >> 31;
	fill_header(ev, id, pd->goid, pd->tid);
	ev->ts_ns = pd->ts_ns;
	ev->stack_id = pd->stack_id;
	ev->caller = pd->caller;
	ev->outer = pd->outer;
	ev->latency_ns = latency;
	bpf_map_delete_elem(&psc_pending, key);
	__u32 rlen = build_section(f, p, PSC_SEC_RET, sc, sizeof(struct psc_event) + elen);
	truncated |= rlen >> 31;
	rlen &= ~SECTION_TRUNCATED;
	ev = (void *)sc->buf;
	ev->flags = PSC_EVF_ENTRY | PSC_EVF_RET | (truncated ? PSC_EVF_TRUNCATED : 0) |
		    ((p->flags & PSC_F_STACK) ? PSC_EVF_STACK : 0);
	ev->entry_len = elen;
	ev->ret_len = rlen;
	emit(sc, sizeof(struct psc_event) + elen + rlen, st);
	return 0;
}

static __always_inline void account_time(struct psc_stats *st, __u64 t0, int head)
{
	__u64 dt = bpf_ktime_get_ns() - t0;
	/* A uprobe's program can be preempted (it runs with migration, not preemption,
	 * disabled): on a busy machine a timed hit then measures another task's time slice,
	 * ms that, scaled up to the untimed hits, priced a probe at several times its cost.
	 * No program of ours takes that long: such a hit is left out of the average. */
	if (dt > PSC_PROG_NS_MAX)
		return;
	if (head) {
		st->head_ns += dt;
		st->head_hits++;
	} else {
		st->prog_ns += dt;
		st->timed++;
	}
}

/* Counts a hit of probe `id` in the calling process (its counters made on its first):
 * its cost, and the calls it counted (`hits`, `unwatched`: the change in the probe's
 * own counters during the hit; per CPU, so nothing else moved them). A global function,
 * so the verifier checks it once rather than on every path that reaches it (twice the
 * load time otherwise), with its key on its own stack. */
__attribute__((noinline)) int count_proc(__u32 id, __u64 cookie, __u64 hits, __u64 unwatched)
{
	struct psc_proc_key key = { .probe = id, .pid = bpf_get_current_pid_tgid() >> 32 };
	struct psc_proc *pp = bpf_map_lookup_elem(&psc_procs, &key);
	if (!pp) {
		struct psc_proc zero = {};
		bpf_map_update_elem(&psc_procs, &key, &zero, BPF_NOEXIST);
		pp = bpf_map_lookup_elem(&psc_procs, &key);
		if (!pp)
			return 0;
	}
	pp->points++;
	if (cookie & PSC_COOKIE_STEPPED)
		pp->stepped++;
	pp->hits += hits;
	pp->unwatched += unwatched;
	return 0;
}

SEC("uprobe")
int periscope_probe(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 id = (__u32)cookie, zero = 0;
	__u32 point = (cookie >> PSC_COOKIE_KIND_SHIFT) & PSC_COOKIE_KIND_MASK;
	if (point == PSC_POINT_RECOVERY) {
		/* runtime.recovery(gp), called through mcall on the system stack: gp in RAX. */
		struct scratch *rs = bpf_map_lookup_elem(&psc_scratch, &zero);
		if (!rs)
			return 0;
		rs->gk.g = ctx->rax;
		rs->gk.pid = bpf_get_current_pid_tgid() >> 32;
		rs->gk._pad = 0;
		rs->pending.ts_ns = bpf_ktime_get_ns();
		bpf_map_update_elem(&psc_recovered, &rs->gk, &rs->pending.ts_ns, BPF_ANY);
		return 0;
	}
	struct psc_probe *p = bpf_map_lookup_elem(&psc_probes, &id);
	/* A detached probe's uprobes fire until the kernel has removed them: its zeroed
	 * plan must neither count nor emit anything. */
	if (!p || !(p->flags & PSC_F_ACTIVE))
		return 0;
	struct psc_stats *st = bpf_map_lookup_elem(&psc_stats, &id);
	if (!st)
		return 0;
	/* The program's own time on this probe: user space adds it to the measured cost
	 * of the hits themselves to show what the probe costs the target. Reading the clock
	 * twice costs ~0.3 µs a hit in a VM, so after the first PSC_TIME_HEAD hits (per
	 * CPU), all timed and summed apart, one hit in PSC_TIME_EVERY is timed and user
	 * space scales their average to the rest. The first hits run cold (several µs);
	 * sampled, they would stand for sixteen hits each, and a probe on a function
	 * called twenty times would show many times its real cost. */
	if (cookie & PSC_COOKIE_STEPPED)
		st->stepped_hits++;
	struct scratch *sc = bpf_map_lookup_elem(&psc_scratch, &zero);
	if (!sc)
		return 0;
	sc->hits0 = st->hits;
	sc->unwatched0 = st->unwatched;
	__u64 seen = st->hits + st->ret_hits + st->morestack;
	int head = seen < PSC_TIME_HEAD;
	int timed = head || (seen & (PSC_TIME_EVERY - 1)) == 0;
	__u64 t0 = timed ? bpf_ktime_get_ns() : 0;
	/* At the stack check's jbe: CF or ZF set means the branch to morestack is taken
	 * and the call will come back through this check on a bigger stack. */
	if (point == PSC_POINT_ENTRY_JBE && (ctx->eflags & (EFLAGS_CF | EFLAGS_ZF))) {
		st->morestack++;
		if (p->flags & PSC_F_PROCS)
			count_proc(id, cookie, 0, 0);
		if (timed)
			account_time(st, t0, head);
		return 0;
	}
	struct frame f;
	int at_call = point == PSC_POINT_CALLSITE || point == PSC_POINT_AFTERCALL;
	load_frame(&f, ctx, at_call ? 8 : 0);
	if (point == PSC_POINT_RET || point == PSC_POINT_AFTERCALL) {
		st->ret_hits++;
		on_return(ctx, &f, p, id, st, sc, (cookie & PSC_COOKIE_SHARED) != 0);
	} else {
		on_entry(ctx, &f, p, id, st, sc, at_call);
	}
	if (p->flags & PSC_F_PROCS)
		count_proc(id, cookie, st->hits - sc->hits0, st->unwatched - sc->unwatched0);
	if (timed)
		account_time(st, t0, head);
	return 0;
}
