//! The chunked transfer coding (RFC 9112 §7.1), read a piece at a time: where the body ends,
//! its data handed out as it comes, size lines, extensions and trailers bounded.

/// A chunked body read a piece at a time: finds where it ends and hands out its data.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    /// The chunk size being read, or the data left of the current chunk.
    size: u64,
    /// Bytes of the current size line's extension, or of the trailer section.
    counted: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    SizeStart,
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body")]
pub struct BadChunk;

/// A size line's extension or the trailer section may not be longer than this.
const MAX_CHUNK_META: usize = 16 * 1024;

impl Chunked {
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Reads `input`, handing each run of data bytes to `data`. Returns how many bytes of
    /// `input` belong to the body: all of them, or fewer once its end was reached.
    pub fn feed(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> Result<usize, BadChunk> {
        use ChunkState::*;
        let mut i = 0;
        while i < input.len() && self.state != Done {
            let b = input[i];
            match self.state {
                SizeStart | Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.size >> 56 != 0 {
                            return Err(BadChunk);
                        }
                        let digit = (b as char).to_digit(16).ok_or(BadChunk)?;
                        self.size = self.size * 16 + u64::from(digit);
                        self.state = Size;
                    }
                    b';' | b' ' | b'\t' if self.state == Size => {
                        self.counted = 0;
                        self.state = Extension;
                    }
                    b'\r' if self.state == Size => self.state = SizeLf,
                    _ => return Err(BadChunk),
                },
                Extension => match b {
                    b'\r' => self.state = SizeLf,
                    b'\n' => return Err(BadChunk),
                    _ => {
                        self.counted += 1;
                        if self.counted > MAX_CHUNK_META {
                            return Err(BadChunk);
                        }
                    }
                },
                SizeLf => {
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    if self.size == 0 {
                        self.counted = 0;
                        self.state = TrailerStart;
                    } else {
                        self.state = Data;
                    }
                }
                Data => {
                    let take =
                        (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    data(&input[i..i + take]);
                    self.size -= take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = DataCr;
                    }
                    continue;
                }
                DataCr => {
                    if b != b'\r' {
                        return Err(BadChunk);
                    }
                    self.state = DataLf;
                }
                DataLf => {
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    self.state = SizeStart;
                }
                TrailerStart => {
                    self.state = if b == b'\r' { EndLf } else { Trailer };
                    self.counted += 1;
                }
                Trailer => {
                    if b == b'\r' {
                        self.state = TrailerLf;
                    } else if b == b'\n' {
                        return Err(BadChunk);
                    }
                    self.counted += 1;
                    if self.counted > MAX_CHUNK_META {
                        return Err(BadChunk);
                    }
                }
                TrailerLf => {
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    self.state = TrailerStart;
                }
                EndLf => {
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    self.state = Done;
                }
                Done => {}
            }
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_in_pieces() {
        let raw = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, raw.len()] {
            let mut c = Chunked::default();
            let mut out = Vec::new();
            let mut used = 0;
            for part in raw.chunks(piece) {
                if c.done() {
                    break;
                }
                used += c.feed(part, |d| out.extend_from_slice(d)).unwrap();
            }
            assert!(c.done());
            assert_eq!(out, b"hello world");
            assert_eq!(&raw[used..], b"NEXT", "piece {piece}");
        }
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"\r\n",
            b"fffffffffffffffff\r\n",
            b"0\r\nbad\ntrailer\r\n\r\n",
        ] {
            let mut c = Chunked::default();
            assert_eq!(
                c.feed(bad, |_| {}),
                Err(BadChunk),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
