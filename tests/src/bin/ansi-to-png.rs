//! `ansi-to-png COLS ROWS IN.ans OUT.png`: renders a terminal capture (`tmux
//! capture-pane -e -p`, text with SGR colour sequences) to a PNG, cell by cell, with
//! DejaVu Sans Mono. `make screenshots` uses it on captures of the real TUI; nothing
//! here draws a screen by hand.
use std::num::NonZeroU16;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};

const REGULAR: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";
const BOLD: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf";
const PX: f32 = 17.0;
const PAD: usize = 12;
const BG: [u8; 3] = [0x1c, 0x1e, 0x26];
const FG: [u8; 3] = [0xd8, 0xda, 0xe0];

/// The 16 ANSI colours (a dark theme), then xterm's 256-colour cube and greys.
fn palette(i: u8) -> [u8; 3] {
    const BASE: [[u8; 3]; 16] = [
        [0x1c, 0x1e, 0x26],
        [0xe0, 0x6c, 0x75],
        [0x98, 0xc3, 0x79],
        [0xe5, 0xc0, 0x7b],
        [0x61, 0xaf, 0xef],
        [0xc6, 0x78, 0xdd],
        [0x56, 0xb6, 0xc2],
        [0xab, 0xb2, 0xbf],
        [0x6b, 0x72, 0x80],
        [0xef, 0x83, 0x8b],
        [0xb5, 0xe0, 0x95],
        [0xf0, 0xd0, 0x90],
        [0x82, 0xc4, 0xff],
        [0xdd, 0x99, 0xf0],
        [0x7a, 0xd4, 0xe0],
        [0xff, 0xff, 0xff],
    ];
    match i {
        0..=15 => BASE[i as usize],
        16..=231 => {
            let i = i - 16;
            let c = |v: u8| if v == 0 { 0 } else { 55 + v * 40 };
            [c(i / 36), c((i / 6) % 6), c(i % 6)]
        }
        _ => {
            let g = 8 + (i - 232) * 10;
            [g, g, g]
        }
    }
}

fn color(c: vt100::Color, default: [u8; 3]) -> [u8; 3] {
    match c {
        vt100::Color::Default => default,
        vt100::Color::Idx(i) => palette(i),
        vt100::Color::Rgb(r, g, b) => [r, g, b],
    }
}

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for yy in y..(y + h).min(self.h) {
            for xx in x..(x + w).min(self.w) {
                let i = (yy * self.w + xx) * 3;
                self.px[i..i + 3].copy_from_slice(&c);
            }
        }
    }

    fn blend(&mut self, x: i64, y: i64, c: [u8; 3], a: f32) {
        if x < 0 || y < 0 || x as usize >= self.w || y as usize >= self.h {
            return;
        }
        let i = (y as usize * self.w + x as usize) * 3;
        for (px, &target) in self.px[i..i + 3].iter_mut().zip(&c) {
            let old = *px as f32;
            *px = (old + (target as f32 - old) * a.clamp(0.0, 1.0)) as u8;
        }
    }
}

/// Block elements are drawn as rectangles so that bars and sparklines join up
/// exactly, whatever the font's metrics.
fn block(ch: char, cw: usize, chh: usize) -> Option<(usize, usize, usize, usize)> {
    let eighth = |n: usize| (chh * n).div_ceil(8);
    Some(match ch {
        '█' => (0, 0, cw, chh),
        '▀' => (0, 0, cw, chh / 2),
        '▁'..='▇' => {
            let n = ch as usize - '▁' as usize + 1;
            (0, chh - eighth(n), cw, eighth(n))
        }
        '▌' => (0, 0, cw / 2, chh),
        '▐' => (cw / 2, 0, cw - cw / 2, chh),
        _ => return None,
    })
}

/// Box-drawing characters as (left, right, up, down) stroke weights (0 none, 1 light,
/// 2 heavy), drawn as rectangles so that borders join up across cells. Rounded
/// corners are drawn square.
fn box_strokes(ch: char) -> Option<[u8; 4]> {
    Some(match ch {
        '─' => [1, 1, 0, 0],
        '━' => [2, 2, 0, 0],
        '│' => [0, 0, 1, 1],
        '┃' => [0, 0, 2, 2],
        '┌' | '╭' => [0, 1, 0, 1],
        '┐' | '╮' => [1, 0, 0, 1],
        '└' | '╰' => [0, 1, 1, 0],
        '┘' | '╯' => [1, 0, 1, 0],
        '┏' => [0, 2, 0, 2],
        '┓' => [2, 0, 0, 2],
        '┗' => [0, 2, 2, 0],
        '┛' => [2, 0, 2, 0],
        '├' => [0, 1, 1, 1],
        '┤' => [1, 0, 1, 1],
        '┬' => [1, 1, 0, 1],
        '┴' => [1, 1, 1, 0],
        '┼' => [1, 1, 1, 1],
        _ => return None,
    })
}

fn draw_box(
    canvas: &mut Canvas,
    x: usize,
    y: usize,
    cw: usize,
    chh: usize,
    s: [u8; 4],
    c: [u8; 3],
) {
    // Two pixels for light lines: one would vanish when a viewer scales the image down.
    let width = |w: u8| if w == 2 { 4 } else { 2 };
    let (cx, cy) = (x + cw / 2, y + chh / 2);
    let [l, r, u, d] = s;
    let hw = width(l.max(r));
    let vw = width(u.max(d));
    if l > 0 {
        canvas.rect(x, cy - width(l) / 2, cw / 2 + vw.div_ceil(2), width(l), c);
    }
    if r > 0 {
        let from = cx - vw / 2;
        canvas.rect(from, cy - width(r) / 2, x + cw - from, width(r), c);
    }
    if u > 0 {
        canvas.rect(cx - width(u) / 2, y, width(u), chh / 2 + hw.div_ceil(2), c);
    }
    if d > 0 {
        let from = cy - hw / 2;
        canvas.rect(cx - width(d) / 2, from, width(d), y + chh - from, c);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, cols, rows, input, output] = &args[..] else {
        eprintln!("usage: ansi-to-png COLS ROWS IN.ans OUT.png");
        std::process::exit(2);
    };
    let (cols, rows): (u16, u16) = (cols.parse().unwrap(), rows.parse().unwrap());
    let raw = std::fs::read(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    // capture-pane ends lines with \n alone; a terminal needs \r\n. The last line's
    // newline would scroll the screen by one, so it goes.
    let raw = raw.strip_suffix(b"\n").unwrap_or(&raw);
    let mut text = Vec::with_capacity(raw.len() + rows as usize);
    for &b in raw {
        if b == b'\n' {
            text.push(b'\r');
        }
        text.push(b);
    }
    let mut parser = vt100::Parser::new(
        NonZeroU16::new(rows).unwrap(),
        NonZeroU16::new(cols).unwrap(),
        0,
    );
    parser.process(&text);
    let screen = parser.screen();

    let regular_bytes = std::fs::read(REGULAR).expect("fonts-dejavu-core (run `make setup`)");
    let bold_bytes = std::fs::read(BOLD).expect("fonts-dejavu-core (run `make setup`)");
    let regular = FontRef::try_from_slice(&regular_bytes).unwrap();
    let bold = FontRef::try_from_slice(&bold_bytes).unwrap();
    let scale = PxScale::from(PX);
    let sf = regular.as_scaled(scale);
    let cw = sf.h_advance(regular.glyph_id('M')).round() as usize;
    let chh = (sf.ascent() - sf.descent()).ceil() as usize;
    let ascent = sf.ascent();

    let mut canvas = Canvas {
        w: cols as usize * cw + 2 * PAD,
        h: rows as usize * chh + 2 * PAD,
        px: Vec::new(),
    };
    canvas.px = BG.repeat(canvas.w * canvas.h);
    for r in 0..rows {
        for c in 0..cols {
            let Some(cell) = screen.cell(r, c) else {
                continue;
            };
            let (mut fg, mut bg) = (color(cell.fgcolor(), FG), color(cell.bgcolor(), BG));
            if cell.inverse() {
                std::mem::swap(&mut fg, &mut bg);
                if cell.fgcolor() == vt100::Color::Default {
                    bg = FG;
                }
                if cell.bgcolor() == vt100::Color::Default {
                    fg = BG;
                }
            }
            let (x, y) = (PAD + c as usize * cw, PAD + r as usize * chh);
            canvas.rect(x, y, cw, chh, bg);
            let Some(ch) = cell.contents().chars().next() else {
                continue;
            };
            if ch == ' ' {
                continue;
            }
            if let Some((bx, by, bw, bh)) = block(ch, cw, chh) {
                canvas.rect(x + bx, y + by, bw, bh, fg);
                continue;
            }
            if let Some(strokes) = box_strokes(ch) {
                draw_box(&mut canvas, x, y, cw, chh, strokes, fg);
                continue;
            }
            let font = if cell.bold() { &bold } else { &regular };
            let glyph = font
                .glyph_id(ch)
                .with_scale_and_position(scale, point(x as f32, y as f32 + ascent));
            if let Some(outlined) = font.outline_glyph(glyph) {
                let b = outlined.px_bounds();
                outlined.draw(|gx, gy, a| {
                    canvas.blend(
                        b.min.x as i64 + gx as i64,
                        b.min.y as i64 + gy as i64,
                        fg,
                        a,
                    )
                });
            }
        }
    }

    let file = std::fs::File::create(output).unwrap_or_else(|e| panic!("{output}: {e}"));
    let mut enc = png::Encoder::new(
        std::io::BufWriter::new(file),
        canvas.w as u32,
        canvas.h as u32,
    );
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(&canvas.px).unwrap();
}
