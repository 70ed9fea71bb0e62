//! The planner and the decoder without a kernel: a probe's plan is run against a fake
//! memory by a model of the BPF program's reads (word chains, fixed and counted
//! ranges, faults, the event's size limit), and the decoder must give back exactly the
//! values placed there, or say why not. Also the condition compiler on a real catalog.
use std::collections::BTreeMap;

use periscope_tests::{Variant, fixture, newest};
use probes_ebpf::plan::{self, Capture};
use probes_ebpf::value::{GoValue, Missing, Name};
use probes_ebpf::wire::*;
use symbols::{Catalog, Loc, TypeId};

/// Memory of a fake process: objects at addresses.
#[derive(Default)]
struct Mem {
    objs: BTreeMap<u64, Vec<u8>>,
    next: u64,
}

impl Mem {
    fn alloc(&mut self, bytes: Vec<u8>) -> u64 {
        let at = 0xc000_0000 + self.next;
        self.next += (bytes.len() as u64).div_ceil(64) * 64 + 64;
        self.objs.insert(at, bytes);
        at
    }

    fn read(&self, addr: u64, n: usize) -> Option<&[u8]> {
        let (&base, obj) = self.objs.range(..=addr).next_back()?;
        let off = (addr - base) as usize;
        obj.get(off..off + n)
    }

    fn string(&mut self, s: &str) -> (u64, u64) {
        (self.alloc(s.as_bytes().to_vec()), s.len() as u64)
    }
}

/// A struct's bytes, fields placed by the catalog's layout.
struct Obj<'a> {
    cat: &'a Catalog,
    ty: TypeId,
    bytes: Vec<u8>,
}

impl<'a> Obj<'a> {
    fn new(cat: &'a Catalog, name: &str) -> Self {
        let ty = (0..cat.types.len() as u32)
            .map(TypeId)
            .find(|&t| cat.types.name(t) == name)
            .unwrap_or_else(|| panic!("no type {name}"));
        Obj {
            cat,
            ty,
            bytes: vec![0; cat.types.get(ty).size as usize],
        }
    }

    fn word(&mut self, field: &str, at: u64, v: u64) -> &mut Self {
        let off = (self.cat.types.field(self.ty, field).unwrap().offset + at) as usize;
        self.bytes[off..off + 8].copy_from_slice(&v.to_le_bytes());
        self
    }

    fn pair(&mut self, field: &str, (a, b): (u64, u64)) -> &mut Self {
        self.word(field, 0, a).word(field, 8, b)
    }
}

fn eval(w: &psc_word, regs: &[u64], mem: &Mem) -> Option<u64> {
    let mut v = if u32::from(w.base) == PSC_BASE_REG {
        regs[w.reg as usize]
    } else {
        return None; // these probes read nothing from the stack
    };
    for i in 0..w.nderef as usize {
        let width = if i + 1 == w.nderef as usize {
            w.width as usize
        } else {
            8
        };
        let b = mem.read(v.wrapping_add(w.path[i] as i64 as u64), width)?;
        let mut x = [0u8; 8];
        x[..width].copy_from_slice(b);
        v = u64::from_le_bytes(x);
    }
    Some(v)
}

/// One event as the BPF program writes it: registers, then the ops' items in order
/// until the section is full (`limit` bytes of items).
fn event(p: &plan::Plan, regs: [u64; PSC_NREGS as usize], mem: &Mem, limit: usize) -> Vec<u8> {
    let mut items = Vec::new();
    let mut nitems = 0u16;
    for (i, op) in p.wire.ops[..p.wire.nops as usize].iter().enumerate() {
        if u32::from(op.section) != PSC_SEC_ENTRY || items.len() > limit {
            continue;
        }
        let ptr = eval(&op.ptr, &regs, mem);
        let mut n = op.size as usize;
        if u32::from(op.kind) == PSC_OP_COUNTED {
            let cnt = eval(&op.len, &regs, mem).unwrap_or(0) as usize;
            n = n.min(cnt * op.elem as usize);
        }
        let bytes = match ptr {
            Some(a) if a != 0 || n == 0 => mem.read(a, n),
            _ => None,
        };
        let (flags, data): (u16, &[u8]) = match bytes {
            Some(b) => (0, b),
            None => (PSC_ITEM_FAULT as u16, &[]),
        };
        items.extend_from_slice(&(i as u16).to_le_bytes());
        items.extend_from_slice(&(data.len() as u16).to_le_bytes());
        items.extend_from_slice(&flags.to_le_bytes());
        items.extend_from_slice(&0u16.to_le_bytes());
        items.extend_from_slice(data);
        items.resize(items.len().div_ceil(8) * 8, 0);
        nitems += 1;
    }
    let mut sec = Vec::new();
    for r in regs {
        sec.extend_from_slice(&r.to_le_bytes());
    }
    sec.extend_from_slice(&0u16.to_le_bytes()); // stack_len
    sec.extend_from_slice(&nitems.to_le_bytes());
    sec.extend_from_slice(&0u32.to_le_bytes());
    sec.extend_from_slice(&items);
    let ev = psc_event {
        version: PSC_VERSION as u16,
        kind: PSC_EV_CALL as u16,
        probe: 1,
        flags: PSC_EVF_ENTRY,
        entry_len: sec.len() as u16,
        ..Default::default()
    };
    // SAFETY: psc_event is a plain C struct of integers (periscope.h).
    let head = unsafe {
        std::slice::from_raw_parts(
            (&ev as *const psc_event).cast::<u8>(),
            std::mem::size_of::<psc_event>(),
        )
    };
    [head, &sec].concat()
}

fn arg<'v>(args: &'v [(Name, GoValue)], name: &str) -> &'v GoValue {
    &args.iter().find(|(n, _)| &**n == name).unwrap().1
}

fn field<'v>(v: &'v GoValue, name: &str) -> &'v GoValue {
    match v {
        GoValue::Struct(fs) => &fs.iter().find(|(n, _)| &**n == name).unwrap().1,
        other => panic!("{name} of a non-struct: {other:?}"),
    }
}

fn s(text: &str) -> GoValue {
    GoValue::Str {
        s: text.into(),
        truncated: false,
    }
}

/// main.(*Mux).Serve(m, r) with a request and a receiver full of strings.
fn serve_call(cat: &Catalog) -> (Mem, [u64; PSC_NREGS as usize]) {
    let mut mem = Mem::default();
    let url = {
        let mut o = Obj::new(cat, "main.URL");
        let (sc, h, p) = (
            mem.string("http"),
            mem.string("shop"),
            mem.string("/items/7"),
        );
        o.pair("Scheme", sc).pair("Host", h).pair("Path", p);
        mem.alloc(o.bytes.clone())
    };
    let req = {
        let mut o = Obj::new(cat, "main.Req");
        let strs = [
            ("Method", mem.string("GET")),
            ("Host", mem.string("shop.local")),
            ("RemoteAddr", mem.string("127.0.0.1:5007")),
            ("RequestURI", mem.string("/items/7?full=1")),
        ];
        for (f, v) in strs {
            o.pair(f, v);
        }
        let body = mem.string("body");
        let header = mem.alloc(1u64.to_le_bytes().to_vec());
        o.word("URL", 0, url).word("Header", 0, header);
        o.pair("Body", body).word("Body", 16, 4);
        mem.alloc(o.bytes.clone())
    };
    let mux = {
        let mut o = Obj::new(cat, "main.Mux");
        let mut names = Vec::new();
        for i in 0..8 {
            let (p, l) = mem.string(&format!("n{i}"));
            names.extend_from_slice(&p.to_le_bytes());
            names.extend_from_slice(&l.to_le_bytes());
        }
        let names = mem.alloc(names);
        o.word("Names", 0, names)
            .word("Names", 8, 8)
            .word("Names", 16, 8);
        for i in 0..8 {
            let route = mem.string(&format!("/route{i}"));
            o.word("Routes", 16 * i, route.0)
                .word("Routes", 16 * i + 8, route.1);
        }
        let prefix = mem.string("/api");
        o.pair("Prefix", prefix);
        mem.alloc(o.bytes.clone())
    };
    let f = cat.function("main.(*Mux).Serve").unwrap();
    let mut regs = [0u64; PSC_NREGS as usize];
    for (v, addr) in f.params.as_ref().unwrap().iter().zip([mux, req]) {
        let Loc::Reg(r) = v.location.pieces[0].loc else {
            panic!("{v:?}")
        };
        regs[r as usize] = addr;
    }
    (mem, regs)
}

fn values_catalog() -> Catalog {
    Catalog::open(&fixture("values", &newest(), Variant::Plain)).unwrap()
}

fn args_capture() -> Capture {
    Capture {
        ret: false,
        latency: false,
        ..Capture::default()
    }
}

#[test]
fn the_decoder_gives_back_what_the_plan_read_and_marks_the_rest() {
    let cat = values_catalog();
    let f = cat.function("main.(*Mux).Serve").unwrap();
    let p = plan::build(&cat, f, &args_capture(), None).unwrap();
    let (mem, regs) = serve_call(&cat);
    let raw = event(&p, regs, &mem, usize::MAX);
    let call = probes_ebpf::decode::decode(&raw, &cat, &p, symbols::LoadBias(0)).unwrap();
    let args = call.args.unwrap();
    let r = arg(&args, "r");
    for (name, want) in [
        ("Method", "GET"),
        ("Host", "shop.local"),
        ("RemoteAddr", "127.0.0.1:5007"),
        ("RequestURI", "/items/7?full=1"),
        ("Body", "body"),
    ] {
        assert_eq!(field(r, name), &s(want), "{name}");
    }
    assert_eq!(field(r, "Header"), &GoValue::Map { len: Some(1) });
    // One level of pointers by default: the URL is its address.
    assert!(matches!(field(r, "URL"), GoValue::Ptr(a) if *a >= 0xc000_0000));
    // The receiver's contents come last, its own fields before what its lists hold:
    // the array's last strings (read after the slice's) did not fit in the 24 reads.
    let m = arg(&args, "m");
    assert_eq!(field(m, "Prefix"), &s("/api"));
    let GoValue::List { items, len: 8 } = field(m, "Names") else {
        panic!("{:?}", field(m, "Names"))
    };
    assert_eq!(items[0], s("n0"));
    let GoValue::List { items, len: 8 } = field(m, "Routes") else {
        panic!("{:?}", field(m, "Routes"))
    };
    assert_eq!(items[7], GoValue::NotCaptured(Missing::Budget));
    assert_eq!(p.wire.nops as u32, PSC_MAX_OPS);
}

#[test]
fn capture_paths_come_first_and_follow_pointers() {
    let cat = values_catalog();
    let f = cat.function("main.(*Mux).Serve").unwrap();
    let capture = Capture {
        paths: vec!["r.URL.Path".into()],
        ..args_capture()
    };
    let p = plan::build(&cat, f, &capture, None).unwrap();
    let (mem, regs) = serve_call(&cat);
    // An event with room for only a few items: what was named is in it.
    let raw = event(&p, regs, &mem, 200);
    let args = probes_ebpf::decode::decode(&raw, &cat, &p, symbols::LoadBias(0))
        .unwrap()
        .args
        .unwrap();
    let url = field(arg(&args, "r"), "URL");
    assert_eq!(field(url, "Path"), &s("/items/7"));
    // The receiver did not fit: the event shows its address (the program's own value),
    // and the request's strings that did not fit say so.
    assert!(
        matches!(arg(&args, "m"), GoValue::Ptr(_)),
        "{:?}",
        arg(&args, "m")
    );
    assert_eq!(
        field(arg(&args, "r"), "RequestURI"),
        &GoValue::NotCaptured(Missing::Budget)
    );
    // A path through a field that is not there is refused, at its column.
    let bad = Capture {
        paths: vec!["r.URL.Nope".into()],
        ..args_capture()
    };
    let e = plan::build(&cat, f, &bad, None).err().unwrap().to_string();
    assert!(
        e.contains("column 7") && e.contains("has no field `Nope`"),
        "{e}"
    );
}

#[test]
fn a_nil_pointer_is_nil_and_an_unreadable_one_is_a_fault() {
    let cat = values_catalog();
    let f = cat.function("main.(*Mux).Serve").unwrap();
    let p = plan::build(&cat, f, &args_capture(), None).unwrap();
    let (mem, mut regs) = serve_call(&cat);
    let ps = f.params.as_ref().unwrap();
    let reg = |i: usize| match ps[i].location.pieces[0].loc {
        Loc::Reg(r) => r as usize,
        _ => unreachable!(),
    };
    regs[reg(0)] = 0;
    regs[reg(1)] = 0x10;
    let raw = event(&p, regs, &mem, usize::MAX);
    let args = probes_ebpf::decode::decode(&raw, &cat, &p, symbols::LoadBias(0))
        .unwrap()
        .args
        .unwrap();
    assert_eq!(arg(&args, "m"), &GoValue::Nil);
    assert_eq!(arg(&args, "r"), &GoValue::Fault(0x10));
}

#[test]
fn conditions_compile_to_the_words_the_kernel_reads() {
    let bin = fixture("kinds", &newest(), Variant::Plain);
    let cat = Catalog::open(&bin).unwrap();
    let set = cat.function("main.SetInfo").unwrap();
    let c =
        probes_ebpf::condition::compile(&cat, set, r#"u.Name == "alice" && u.Age >= 18"#).unwrap();
    assert_eq!(c.atoms.len(), 2);
    assert_eq!(c.prog, [0, 1, PSC_PROG_AND as u8]);
    let user = cat
        .function("main.SetInfo")
        .unwrap()
        .params
        .as_ref()
        .unwrap()[0]
        .ty;
    let Some(symbols::Kind::Pointer(Some(ut))) = Some(&cat.types.get(user).kind).cloned() else {
        panic!()
    };
    let (name, age) = (
        cat.types.field(ut, "Name").unwrap().offset,
        cat.types.field(ut, "Age").unwrap().offset,
    );
    let (a, b) = (&c.atoms[0], &c.atoms[1]);
    assert_eq!(u32::from(a.kind), PSC_ATOM_STR_EQ);
    assert_eq!(&a.str_[..5], b"alice");
    // u.Name: one load through u, the string's data pointer and then its length.
    assert_eq!((a.a.nderef, a.a.path[0]), (1, name as i32));
    assert_eq!((a.b.nderef, a.b.path[0]), (1, name as i32 + 8));
    assert_eq!(
        (u32::from(b.cmp), b.value, b.a.path[0]),
        (PSC_GE, 18, age as i32)
    );
    assert!(!c.reads_results);
    // Results are decided at the return.
    let div = cat.function("main.Divide").unwrap();
    let c = probes_ebpf::condition::compile(&cat, div, "b == 0 || q > 50").unwrap();
    assert!(c.reads_results);
    assert_eq!(
        c.atoms.iter().map(|a| a.section).collect::<Vec<_>>(),
        [PSC_SEC_ENTRY as u8, PSC_SEC_RET as u8]
    );
    // Errors point at their column.
    for (text, col) in [
        ("u.Nme == \"x\"", 3),
        ("u.Age == \"x\"", 10),
        ("address > 3", 11),
    ] {
        let e = probes_ebpf::condition::compile(&cat, set, text).unwrap_err();
        assert_eq!(e.column, col, "{text}: {e}");
    }
}
