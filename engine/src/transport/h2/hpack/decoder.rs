//! HPACK header block decoding (RFC 7541 §6): the field representations,
//! prefix integers and string literals, kept in step with the peer's encoder
//! through the dynamic table.

use super::huffman;
use super::table::DynamicTable;

/// The most continuation bytes an integer may have: enough for any value up
/// to 2^28 (far past any table index, string or table size a block can
/// carry, and the same bound as the h2 and loona-hpack crates), so that a
/// value never overflows and a run of 0x80 bytes is refused early.
const MAX_CONTINUATIONS: usize = 4;

/// Why a block is refused: its HPACK is wrong (COMPRESSION_ERROR).
pub(crate) type HpackError = &'static str;

/// Where a decoded string lies: in the block as sent (a raw literal, never
/// copied) or in the decoder's scratch buffer (Huffman-decoded, or a name
/// copied from a table).
#[derive(Debug, Clone, Copy)]
enum Text {
    Block(usize, usize),
    Scratch(usize, usize),
}

impl Text {
    fn get<'a>(self, block: &'a [u8], scratch: &'a [u8]) -> &'a [u8] {
        match self {
            // Bounds checked when the Text was made.
            Text::Block(start, end) => &block[start..end],
            Text::Scratch(start, end) => &scratch[start..end],
        }
    }
}

/// The decoding state one connection keeps for its peer's header blocks.
#[derive(Debug)]
pub(crate) struct Decoder {
    table: DynamicTable,
    /// Our SETTINGS_HEADER_TABLE_SIZE: the most a size update may set.
    max_table_size: usize,
    /// Huffman-decoded strings and copied names of the field being decoded;
    /// reused from field to field, so that a warm decoder allocates only for
    /// table entries.
    scratch: Vec<u8>,
}

/// Scratch capacity kept between blocks: larger buffers (left by an unusual
/// block) are dropped so that an idle connection holds little.
const SCRATCH_KEPT: usize = 4096;

impl Decoder {
    /// The table starts at RFC 7541's default of 4,096 (§4.2, RFC 9113
    /// §6.5.2); the peer may change it up to `max_table_size`.
    pub(crate) fn new(max_table_size: usize) -> Self {
        Self {
            table: DynamicTable::new(4096),
            max_table_size,
            scratch: Vec::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn table(&self) -> &DynamicTable {
        &self.table
    }

    /// Decodes a whole block, handing each field to `field` in order.
    /// `field` returns false to stop the decoding (the fields so far have
    /// been counted past a bound): the block is then refused whole, so the
    /// table no longer matters.
    pub(crate) fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<bool, HpackError> {
        let result = self.decode_fields(block, &mut field);
        if self.scratch.capacity() > SCRATCH_KEPT {
            self.scratch = Vec::new();
        }
        result
    }

    fn decode_fields(
        &mut self,
        block: &[u8],
        field: &mut impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<bool, HpackError> {
        let mut at = 0;
        let mut fields_seen = false;
        while let Some(&first) = block.get(at) {
            if first & 0x80 != 0 {
                // Indexed field (§6.1).
                let (index, next) = integer(block, at, 7)?;
                at = next;
                let (name, value) = self.table.get(index).ok_or("HPACK index out of range")?;
                fields_seen = true;
                if !field(name, value) {
                    return Ok(false);
                }
                continue;
            }
            if first & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3): only before the block's
                // first field (§4.2).
                if fields_seen {
                    return Err("HPACK table size update after a field");
                }
                let (size, next) = integer(block, at, 5)?;
                at = next;
                if size > self.max_table_size {
                    return Err("HPACK table size update past our setting");
                }
                self.table.set_max_size(size);
                continue;
            }
            // A literal (§6.2): with incremental indexing (01), without
            // indexing (0000) or never indexed (0001); a name by index or
            // literal (index 0), then a literal value.
            let indexing = first & 0x40 != 0;
            let (index, next) = integer(block, at, if indexing { 6 } else { 4 })?;
            at = next;
            self.scratch.clear();
            let name = if index == 0 {
                let (name, next) = string(block, at, &mut self.scratch)?;
                at = next;
                name
            } else {
                // Copied, not borrowed: adding the field to the table may
                // evict the entry the name came from.
                let (name, _) = self.table.get(index).ok_or("HPACK index out of range")?;
                self.scratch.extend_from_slice(name);
                Text::Scratch(0, name.len())
            };
            let (value, next) = string(block, at, &mut self.scratch)?;
            at = next;
            let (name, value) = (
                name.get(block, &self.scratch),
                value.get(block, &self.scratch),
            );
            fields_seen = true;
            if !field(name, value) {
                return Ok(false);
            }
            if indexing {
                self.table.insert(name, value);
            }
        }
        Ok(true)
    }
}

/// Reads an integer of an `n`-bit prefix at `at` (RFC 7541 §5.1); returns it
/// and the position after it.
pub(crate) fn integer(block: &[u8], at: usize, n: u8) -> Result<(usize, usize), HpackError> {
    const CUT: HpackError = "HPACK block cut short";
    let mask = (1u8 << n) - 1;
    let first = *block.get(at).ok_or(CUT)? & mask;
    if first < mask {
        return Ok((usize::from(first), at + 1));
    }
    let mut value = usize::from(mask);
    for i in 0..MAX_CONTINUATIONS {
        let byte = *block.get(at + 1 + i).ok_or(CUT)?;
        value += usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, at + 2 + i));
        }
    }
    Err("HPACK integer too long")
}

/// Reads a string literal at `at` (RFC 7541 §5.2): a raw one stays where it
/// lies, a Huffman one is decoded onto the end of `scratch`.
fn string(block: &[u8], at: usize, scratch: &mut Vec<u8>) -> Result<(Text, usize), HpackError> {
    let huffman_coded = block.get(at).is_some_and(|b| b & 0x80 != 0);
    let (len, start) = integer(block, at, 7)?;
    let end = start
        .checked_add(len)
        .filter(|&end| end <= block.len())
        .ok_or("HPACK string past the block")?;
    if !huffman_coded {
        return Ok((Text::Block(start, end), end));
    }
    let from = scratch.len();
    huffman::decode(&block[start..end], scratch)?;
    Ok((Text::Scratch(from, scratch.len()), end))
}
