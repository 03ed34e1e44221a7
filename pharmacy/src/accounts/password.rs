//! Password hashing with bounded memory: argon2id at parameters OWASP accepts, each
//! computation in working memory of its own that goes back to the operating system the moment
//! it is done, and at most a fixed amount of that memory in use per process at once — the rest
//! wait in a bounded queue, and past the queue a check is refused ([`Busy`], a 503 with
//! `Retry-After`).
//!
//! Why: argon2 needs `m_cost` KiB of memory per computation. Left to the allocator (the argon2
//! crate's own `vec!`), each 19 MiB block landed in the malloc arena of whichever blocking
//! thread ran it, and glibc kept it there: a worker whose staff had logged in stayed at
//! 120–350 MB for good. Here the blocks are an anonymous mapping made for the one computation
//! and unmapped after it, so a worker's memory returns to its idle figure as soon as the
//! logins are done.
//!
//! Existing hashes keep verifying whatever their parameters (they are in the stored PHC
//! string); [`needs_rehash`] tells a caller that a hash is not at [`PARAMS`], so that a
//! successful login can store a new one.

use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
use serde::Serialize;

use super::django;

/// The parameters of every new hash: argon2id, 7 MiB, 5 passes, one lane — the cheapest in
/// memory of the five equivalent settings OWASP's Password Storage Cheat Sheet lists (46 MiB×1,
/// 19 MiB×2, 12 MiB×3, 9 MiB×4, 7 MiB×5 passes: the same work for an attacker's hardware, traded
/// between memory and time). Memory is what a server with a process per pharmacy has least
/// of: two logins at once cost a worker 14 MiB for some 30 ms, not 38.
pub const M_COST_KIB: u32 = 7 * 1024;
pub const T_COST: u32 = 5;
pub const P_COST: u32 = 1;

/// How much argon2 working memory one process may have in use at once: two computations at
/// [`PARAMS`]. A stored hash that needs more (older parameters) runs alone.
const BUDGET_KIB: u32 = 2 * M_COST_KIB;

/// Checks that may wait for memory at once; past this, [`Busy`]. At about 30 ms a check and
/// two at a time, the last in the queue waits about a second.
const QUEUE: usize = 64;

/// A stored hash asking for more memory than this is not computed (it cannot have been made by
/// Apotheca, and computing it could take the box's memory): it verifies nothing.
const MAX_M_COST_KIB: u32 = 256 * 1024;

/// The argon2id parameters of every new hash.
pub fn params() -> Params {
    Params::new(M_COST_KIB, T_COST, P_COST, None).expect("constant argon2 parameters are valid")
}

/// Too many password checks waiting already; try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks at once; try again in a moment")]
pub struct Busy;

/// An argon2id PHC string at [`params`]. Slow on purpose (tens of ms of CPU): call it from a
/// blocking thread, or use [`hash_password_async`], which also bounds the memory in use.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .expect("a generated salt decodes");
    let mut out = [0u8; 32];
    compute(&argon, password.as_bytes(), salt_bytes, &mut out)
        .expect("argon2 at constant parameters hashes any password within MAX_PASSWORD");
    let output = argon2::password_hash::Output::new(&out).expect("32 bytes is a valid output");
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params()).try_into().expect("constant parameters format"),
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string()
}

/// Whether `password` matches `hash`: an argon2 PHC string of any variant and parameters, or a
/// hash Django made ([`super::django`]); false for a malformed one, an unusable one, or one
/// asking for more than the bounds (256 MiB of argon2 memory; PBKDF2 iterations, bcrypt cost).
pub fn verify_password(hash: &str, password: &str) -> bool {
    let Some(job) = Stored::parse(hash) else {
        return false;
    };
    job.matches(password.as_bytes())
}

/// Whether `hash` is one [`verify_password`] can check at all (of a kind it verifies, well
/// formed, within the bounds), whatever the password.
pub fn verifiable(hash: &str) -> bool {
    Stored::parse(hash).is_some()
}

/// Whether `hash` should be replaced by one at [`params`] (it verified, but was made with
/// other parameters or another argon2 variant).
pub fn needs_rehash(hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return true;
    };
    let current = params();
    parsed.algorithm != Algorithm::Argon2id.ident()
        || parsed.version != Some(Version::V0x13.into())
        || Params::try_from(&parsed).map_or(true, |p| {
            (p.m_cost(), p.t_cost(), p.p_cost())
                != (current.m_cost(), current.t_cost(), current.p_cost())
        })
}

/// [`hash_password`] on a blocking thread, within the process's bound.
pub async fn hash_password_async(password: &str) -> Result<String, Busy> {
    let password = password.to_owned();
    gate()
        .run(M_COST_KIB, move || hash_password(&password))
        .await
}

/// [`verify_password`] on a blocking thread, within the process's bound.
pub async fn verify_password_async(hash: &str, password: &str) -> Result<bool, Busy> {
    let Some(job) = Stored::parse(hash) else {
        return Ok(false);
    };
    let password = password.to_owned();
    gate()
        .run(job.cost_kib(), move || job.matches(password.as_bytes()))
        .await
}

/// A hash to verify against when the user does not exist, so that answering takes as long
/// either way and does not reveal which usernames exist.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no such user, no such password"))
}

/// The process's argon2 figures, for `/_apotheca/stats`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct HashStats {
    /// Computations running now.
    pub running: usize,
    /// The most that ever ran at once.
    pub peak_running: usize,
    /// Waiting for memory now.
    pub waiting: usize,
    /// Computations finished.
    pub done: u64,
    /// Refused because the queue was full.
    pub refused: u64,
}

pub fn stats() -> HashStats {
    let g = gate();
    HashStats {
        running: g.running.load(Ordering::Relaxed),
        peak_running: g.peak.load(Ordering::Relaxed),
        waiting: g.waiting.load(Ordering::Relaxed),
        done: g.done.load(Ordering::Relaxed),
        refused: g.refused.load(Ordering::Relaxed),
    }
}

/// A stored hash, parsed: what computing it again needs.
enum Stored {
    Argon2(Argon2Hash),
    /// PBKDF2 or bcrypt, from Django.
    Django(django::Hash),
}

impl Stored {
    fn parse(hash: &str) -> Option<Self> {
        django::Hash::parse(hash).map(Self::Django).or_else(|| {
            Argon2Hash::parse(django::argon2_phc(hash).unwrap_or(hash)).map(Self::Argon2)
        })
    }

    /// The working memory the gate counts for it: argon2's own; a PBKDF2 or bcrypt check,
    /// which needs almost none but a core, counts as one computation at [`params`].
    fn cost_kib(&self) -> u32 {
        match self {
            Self::Argon2(a) => a.params.m_cost(),
            Self::Django(_) => M_COST_KIB,
        }
    }

    fn matches(&self, password: &[u8]) -> bool {
        match self {
            Self::Argon2(a) => a.matches(password),
            Self::Django(d) => d.matches(password),
        }
    }
}

/// An argon2 PHC string, parsed.
struct Argon2Hash {
    argon: Argon2<'static>,
    params: Params,
    salt: Vec<u8>,
    expected: Vec<u8>,
}

impl Argon2Hash {
    fn parse(hash: &str) -> Option<Self> {
        let parsed = PasswordHash::new(hash).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let version = parsed
            .version
            .map_or(Ok(Version::V0x13), Version::try_from)
            .ok()?;
        let expected = parsed.hash?.as_bytes().to_vec();
        let stored = Params::try_from(&parsed).ok()?;
        if stored.m_cost() > MAX_M_COST_KIB {
            tracing::warn!(
                m_cost_kib = stored.m_cost(),
                "a stored password hash asks for more argon2 memory than allowed; not verified"
            );
            return None;
        }
        let params = Params::new(
            stored.m_cost(),
            stored.t_cost(),
            stored.p_cost(),
            Some(expected.len()),
        )
        .ok()?;
        let mut salt = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt).ok()?.to_vec();
        Some(Self {
            argon: Argon2::new(algorithm, version, params.clone()),
            params,
            salt,
            expected,
        })
    }

    fn matches(&self, password: &[u8]) -> bool {
        let mut out = vec![0u8; self.expected.len()];
        compute(&self.argon, password, &self.salt, &mut out).is_ok()
            && super::same_secret(&out, &self.expected)
    }
}

/// One argon2 computation in a mapping of its own, unmapped when it is done.
fn compute(argon: &Argon2, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), String> {
    // `block_count` is what `Argon2::hash_password_into` allocates: m_cost rounded down to a
    // multiple of 4 × lanes.
    let blocks = argon.params().block_count();
    let mut scratch = Scratch::map(blocks).map_err(|e| format!("argon2 memory: {e}"))?;
    argon
        .hash_password_into_with_memory(password, salt, out, scratch.blocks())
        .map_err(|e| e.to_string())
}

/// Anonymous memory for argon2's blocks, given back to the kernel on drop.
struct Scratch {
    start: NonNull<std::ffi::c_void>,
    len: usize,
    blocks: usize,
}

impl Scratch {
    fn map(blocks: usize) -> nix::Result<Self> {
        let len = blocks.max(1) * Block::SIZE;
        let length = NonZeroUsize::new(len).expect("at least one block");
        // SAFETY: a fresh private anonymous mapping: no other reference to it exists, it is
        // zero-filled (a valid `Block` is any bit pattern: it is an array of u64) and
        // page-aligned (more than `Block`'s 64-byte alignment).
        let start = unsafe {
            mmap_anonymous(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )?
        };
        Ok(Self { start, len, blocks })
    }

    fn blocks(&mut self) -> &mut [Block] {
        // SAFETY: the mapping is `blocks` × Block::SIZE bytes, aligned, zero-initialised, and
        // borrowed mutably through `self` only.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr().cast::<Block>(), self.blocks) }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `map`; no borrow of it outlives `self`.
        if let Err(e) = unsafe { munmap(self.start, self.len) } {
            tracing::error!(error = %e, "could not unmap argon2 memory");
        }
    }
}

// SAFETY: `Scratch` owns its mapping alone, like a `Box<[Block]>`.
unsafe impl Send for Scratch {}

/// The process's bound on argon2 memory: a semaphore of KiB, and a count of who waits.
struct Gate {
    memory: tokio::sync::Semaphore,
    budget_kib: u32,
    queue: usize,
    waiting: AtomicUsize,
    running: AtomicUsize,
    peak: AtomicUsize,
    done: AtomicU64,
    refused: AtomicU64,
}

fn gate() -> &'static Gate {
    static GATE: OnceLock<Gate> = OnceLock::new();
    GATE.get_or_init(|| Gate::new(BUDGET_KIB, QUEUE))
}

impl Gate {
    fn new(budget_kib: u32, queue: usize) -> Self {
        Self {
            memory: tokio::sync::Semaphore::new(budget_kib as usize),
            budget_kib,
            queue,
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            done: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Runs `work` (needing `m_cost` KiB) on a blocking thread once the memory is free; a
    /// job needing more than the whole budget takes all of it and runs alone.
    async fn run<T: Send + 'static>(
        &self,
        m_cost: u32,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let permit = if queued >= self.queue {
            None
        } else {
            self.memory
                .acquire_many(m_cost.min(self.budget_kib))
                .await
                .ok()
        };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let Some(_permit) = permit else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Busy);
        };
        let running = self.running.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(running, Ordering::AcqRel);
        let result = tokio::task::spawn_blocking(work).await;
        self.running.fetch_sub(1, Ordering::AcqRel);
        self.done.fetch_add(1, Ordering::Relaxed);
        // A panic in argon2 is a bug; the caller sees the check refused, not a crash.
        result.map_err(|e| {
            tracing::error!(error = %e, "a password hash computation failed");
            Busy
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_hashes_are_at_the_chosen_parameters_and_verify() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{hash}");
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horse "));
        assert!(!needs_rehash(&hash));
        assert!(!verify_password("garbage", "x"));
    }

    #[test]
    fn hashes_made_with_other_parameters_verify_and_are_due_for_a_rehash() {
        use argon2::password_hash::PasswordHasher;
        let salt = SaltString::generate(&mut OsRng);
        // The argon2 crate's defaults, which Apotheca used before (19 MiB, 2 passes).
        let old = Argon2::default()
            .hash_password(b"old password", &salt)
            .unwrap()
            .to_string();
        assert!(old.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{old}");
        assert!(verify_password(&old, "old password"));
        assert!(!verify_password(&old, "old passwort"));
        assert!(needs_rehash(&old));
        // Another variant, more lanes, a longer output.
        let other = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(8 * 1024, 3, 2, Some(40)).unwrap(),
        )
        .hash_password(b"other", &salt)
        .unwrap()
        .to_string();
        assert!(verify_password(&other, "other"));
        assert!(needs_rehash(&other));
    }

    #[tokio::test]
    async fn at_most_the_budget_runs_at_once_and_past_the_queue_it_is_busy() {
        let gate = std::sync::Arc::new(Gate::new(2 * M_COST_KIB, 3));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = std::sync::Arc::new(std::sync::Mutex::new(held));
        let mut jobs = Vec::new();
        for _ in 0..5 {
            let (gate, held) = (gate.clone(), held.clone());
            jobs.push(tokio::spawn(async move {
                gate.run(M_COST_KIB, move || held.lock().unwrap().recv().unwrap())
                    .await
            }));
        }
        // Two run (each holds its blocking thread until released), three wait.
        while gate.running.load(Ordering::Acquire) < 2 || gate.waiting.load(Ordering::Acquire) < 3 {
            tokio::task::yield_now().await;
        }
        // The queue is full: the next is refused at once.
        assert_eq!(gate.run(M_COST_KIB, || ()).await, Err(Busy));
        for _ in 0..5 {
            release.send(()).unwrap();
        }
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        assert_eq!(gate.peak.load(Ordering::Acquire), 2);
        assert_eq!(gate.refused.load(Ordering::Acquire), 1);
        assert_eq!(gate.done.load(Ordering::Acquire), 5);
    }

    #[test]
    fn a_hash_asking_for_too_much_memory_verifies_nothing() {
        let hash = "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$\
                    AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(!verify_password(hash, "x"));
    }
}
