//! Files periscope writes itself: captured calls (the TUI's `w`) and the kernel
//! verifier's log when it refuses periscope's program. Captured arguments can be
//! passwords and tokens, and periscope usually runs as root, so every such file is
//! created exclusively and privately (private.rs), in a directory its user owns
//! (state.rs).
mod private;
mod state;

pub use private::create;
pub use state::{state_dir, write_state_file};
