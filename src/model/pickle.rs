//! The subset of Python's pickle format that `torch.save` writes for a state_dict (protocol 2,
//! plus the protocol 4 framing opcodes in case a checkpoint was saved with a newer protocol).
//!
//! Input: the bytes of `<folder>/data.pkl`. Output: one [`Value`] tree whose tensors are
//! [`TensorRef`]s into storages that live beside the pickle in the zip (read by `checkpoint.rs`).
//!
//! Nothing here executes code: the only callables are the three that a state_dict needs
//! (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter`);
//! any other global is refused where it appears. The input is untrusted (a corrupt or hostile
//! file): every read is bounds-checked, nesting is capped so dropping a value cannot overflow the
//! stack, and shared values are reference-counted so memo look-ups cannot blow up memory.

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use super::opcodes::*;

/// Deepest nesting of tuples, lists and dicts accepted. A state_dict needs 3 (dict → tuple of
/// sizes); the cap keeps recursive drops shallow whatever the input.
const MAX_DEPTH: u32 = 64;

/// Elements that copy-on-write may clone in one load. A real state_dict clones almost nothing;
/// the cap turns a hostile "memoise, fetch, append" loop into an error instead of a hang.
const MAX_CLONED_ELEMENTS: usize = 1 << 24;

/// A decoded pickle value. Containers are shared (`Rc`) because the memo hands out the same
/// object many times; mutation goes through copy-on-write.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    /// A class or function named by GLOBAL / STACK_GLOBAL (only known ones get this far).
    Global(Rc<Global>),
    Tuple(Rc<Seq>),
    List(Rc<Seq>),
    /// `dict` or `collections.OrderedDict`, in insertion order.
    Dict(Rc<Map>),
    /// A persistent id naming a storage: `('storage', torch.XStorage, key, location, numel)`.
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

impl Value {
    /// A short type name for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Global(_) => "global",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    fn depth(&self) -> u32 {
        match self {
            Value::Tuple(s) | Value::List(s) => s.depth,
            Value::Dict(m) => m.depth,
            _ => 0,
        }
    }
}

/// A module-qualified name, e.g. `torch._utils._rebuild_tensor_v2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    pub module: String,
    pub name: String,
}

impl fmt::Display for Global {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// Tuple or list items, with the nesting depth they reach.
#[derive(Debug, Clone, Default)]
pub struct Seq {
    pub items: Vec<Value>,
    depth: u32,
}

/// Dict entries in insertion order (duplicate keys are kept; the state_dict reader rejects them).
#[derive(Debug, Clone, Default)]
pub struct Map {
    pub entries: Vec<(Value, Value)>,
    depth: u32,
}

/// Element type of a torch storage, from its class name (`torch.FloatStorage`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    fn from_storage_class(name: &str) -> Option<Dtype> {
        Some(match name {
            "DoubleStorage" => Dtype::F64,
            "FloatStorage" => Dtype::F32,
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::BF16,
            "LongStorage" => Dtype::I64,
            "IntStorage" => Dtype::I32,
            "ShortStorage" => Dtype::I16,
            "CharStorage" => Dtype::I8,
            "ByteStorage" => Dtype::U8,
            "BoolStorage" => Dtype::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    /// torch's name for the dtype.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F64 => "float64",
            Dtype::F32 => "float32",
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
            Dtype::I64 => "int64",
            Dtype::I32 => "int32",
            Dtype::I16 => "int16",
            Dtype::I8 => "int8",
            Dtype::U8 => "uint8",
            Dtype::Bool => "bool",
        }
    }
}

/// A storage named by a persistent id; its bytes are the zip entry `<folder>/data/<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    pub key: String,
    pub dtype: Dtype,
    pub location: String,
    /// Elements in the storage (not bytes).
    pub numel: usize,
}

/// A tensor view into a storage, as `torch._utils._rebuild_tensor_v2` receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    pub storage: Rc<StorageRef>,
    /// In elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    /// In elements, one per dimension.
    pub stride: Vec<usize>,
}

/// Why a pickle could not be read, with the byte offset of the opcode at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {message}")]
pub struct PickleError {
    pub offset: usize,
    pub message: String,
}

/// Reads a pickle and returns the value that its STOP opcode returns.
pub fn load(bytes: &[u8]) -> Result<Value, PickleError> {
    Machine { bytes, pos: 0, op_start: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), cloned: 0 }.run()
}

/// The globals a state_dict uses: the callables REDUCE may call and the storage classes.
fn is_known_global(module: &str, name: &str) -> bool {
    matches!(
        (module, name),
        ("collections", "OrderedDict")
            | ("torch._utils", "_rebuild_tensor_v2")
            | ("torch._utils", "_rebuild_parameter")
    ) || (module == "torch" && Dtype::from_storage_class(name).is_some())
}

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed, for errors.
    op_start: usize,
    stack: Vec<Value>,
    /// Stack lengths at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    cloned: usize,
}

impl<'a> Machine<'a> {
    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            self.op_start = self.pos;
            let op = self.read_u8().map_err(|_| self.error_at(self.pos, "ends before a STOP opcode".into()))?;
            match op {
                PROTO => {
                    let version = self.read_u8()?;
                    if !(2..=5).contains(&version) {
                        return Err(self.error(format!("PROTO: unsupported protocol {version}")));
                    }
                }
                // Frames only group opcodes for buffered reading; the whole pickle is in memory.
                FRAME => {
                    self.take(8)?;
                }
                GLOBAL => {
                    let module = self.read_line()?;
                    let name = self.read_line()?;
                    self.push_global(module, name)?;
                }
                STACK_GLOBAL => {
                    let name = self.pop_str()?;
                    let module = self.pop_str()?;
                    self.push_global(module.to_string(), name.to_string())?;
                }
                EMPTY_DICT => self.stack.push(Value::Dict(Rc::default())),
                EMPTY_LIST => self.stack.push(Value::List(Rc::default())),
                EMPTY_TUPLE => self.stack.push(Value::Tuple(Rc::default())),
                MARK => self.marks.push(self.stack.len()),
                TUPLE => {
                    let items = self.pop_mark()?;
                    self.push_tuple(items)?;
                }
                TUPLE1 | TUPLE2 | TUPLE3 => {
                    let n = usize::from(op - TUPLE1 + 1);
                    let items = self.pop_n(n)?;
                    self.push_tuple(items)?;
                }
                BINUNICODE => {
                    let len = u32::from_le_bytes(self.array()?) as usize;
                    self.push_str(len)?;
                }
                SHORT_BINUNICODE => {
                    let len = usize::from(self.read_u8()?);
                    self.push_str(len)?;
                }
                BINUNICODE8 => {
                    let len = u64::from_le_bytes(self.array()?);
                    let len = usize::try_from(len).map_err(|_| self.error(format!("string length {len} too large")))?;
                    self.push_str(len)?;
                }
                BININT => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.stack.push(Value::Int(i64::from(v)));
                }
                BININT1 => {
                    let v = self.read_u8()?;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                BININT2 => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.stack.push(Value::Int(i64::from(v)));
                }
                LONG1 => {
                    let n = usize::from(self.read_u8()?);
                    let digits = self.take(n)?;
                    let v =
                        long_from_le(digits).ok_or_else(|| self.error(format!("LONG1: {n}-byte integer too large")))?;
                    self.stack.push(Value::Int(v));
                }
                NEWTRUE => self.stack.push(Value::Bool(true)),
                NEWFALSE => self.stack.push(Value::Bool(false)),
                NONE => self.stack.push(Value::None),
                BINFLOAT => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.stack.push(Value::Float(v));
                }
                BINPUT => {
                    let index = u32::from(self.read_u8()?);
                    self.memo_put(index)?;
                }
                LONG_BINPUT => {
                    let index = u32::from_le_bytes(self.array()?);
                    self.memo_put(index)?;
                }
                MEMOIZE => {
                    let index = u32::try_from(self.memo.len()).map_err(|_| self.error("memo full".into()))?;
                    self.memo_put(index)?;
                }
                BINGET => {
                    let index = u32::from(self.read_u8()?);
                    self.memo_get(index)?;
                }
                LONG_BINGET => {
                    let index = u32::from_le_bytes(self.array()?);
                    self.memo_get(index)?;
                }
                REDUCE => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let value = self.reduce(callable, args)?;
                    self.stack.push(value);
                }
                BINPERSID => {
                    let pid = self.pop()?;
                    let storage = self.persistent_load(pid)?;
                    self.stack.push(storage);
                }
                BUILD => {
                    let _state = self.pop()?;
                    // torch stores the module version table (`_metadata`) as an attribute of
                    // the state_dict; it carries no weights, so a dict's state is dropped.
                    match self.top()? {
                        Value::Dict(_) | Value::Tensor(_) => {}
                        other => return Err(self.error(format!("BUILD: cannot set the state of a {}", other.kind()))),
                    }
                }
                SETITEM => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.set_items(vec![key, value])?;
                }
                SETITEMS => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(self.error("SETITEMS: odd number of items after the MARK".into()));
                    }
                    self.set_items(items)?;
                }
                APPEND => {
                    let value = self.pop()?;
                    self.append(vec![value])?;
                }
                APPENDS => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                STOP => return self.pop(),
                other => {
                    let message = match opcode_name(other) {
                        Some(name) => format!("opcode {name} (0x{other:02x}) is not supported in a checkpoint"),
                        None => format!("unknown opcode 0x{other:02x}"),
                    };
                    return Err(self.error(message));
                }
            }
        }
    }

    fn error(&self, message: String) -> PickleError {
        let name = self.bytes.get(self.op_start).and_then(|&op| opcode_name(op));
        let message = match name {
            Some(name) if !message.starts_with(name) && !message.starts_with("opcode") => format!("{name}: {message}"),
            _ => message,
        };
        PickleError { offset: self.op_start, message }
    }

    fn error_at(&self, offset: usize, message: String) -> PickleError {
        PickleError { offset, message }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.error(format!("argument of {n} bytes runs past the end of the pickle (truncated?)")));
        };
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let slice = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn read_u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.array::<1>()?[0])
    }

    /// A GLOBAL argument: text up to a newline.
    fn read_line(&mut self) -> Result<String, PickleError> {
        let rest: &'a [u8] = self.bytes.get(self.pos..).unwrap_or_default();
        let Some(len) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.error("name without a terminating newline".into()));
        };
        let line = std::str::from_utf8(&rest[..len]).map_err(|_| self.error("name is not UTF-8".into()))?.to_owned();
        self.pos += len + 1;
        Ok(line)
    }

    fn push_str(&mut self, len: usize) -> Result<(), PickleError> {
        let bytes = self.take(len)?;
        let text = std::str::from_utf8(bytes).map_err(|e| format!("string is not valid UTF-8 ({e})"));
        let text = text.map_err(|m| self.error(m))?;
        let value = Value::Str(Rc::from(text));
        self.stack.push(value);
        Ok(())
    }

    fn push_global(&mut self, module: String, name: String) -> Result<(), PickleError> {
        if !is_known_global(&module, &name) {
            return Err(self.error(format!("unsupported global `{module}.{name}` (not part of a state_dict)")));
        }
        self.stack.push(Value::Global(Rc::new(Global { module, name })));
        Ok(())
    }

    fn push_tuple(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        let depth = self.container_depth(items.iter())?;
        self.stack.push(Value::Tuple(Rc::new(Seq { items, depth })));
        Ok(())
    }

    fn container_depth<'v>(&self, items: impl Iterator<Item = &'v Value>) -> Result<u32, PickleError> {
        let depth = items.map(Value::depth).max().unwrap_or(0) + 1;
        if depth > MAX_DEPTH {
            return Err(self.error(format!("values nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(depth)
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        // A MARK above the top means the opcode would reach below it: corrupt.
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.error("stack underflow (pops past a MARK)".into()));
        }
        self.stack.pop().ok_or_else(|| self.error("stack underflow".into()))
    }

    fn top(&self) -> Result<&Value, PickleError> {
        self.stack.last().ok_or_else(|| self.error("stack underflow".into()))
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Value>, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() < floor + n {
            return Err(self.error(format!("stack underflow (needs {n} values)")));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self.marks.pop().ok_or_else(|| self.error("no MARK on the stack".into()))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn pop_str(&mut self) -> Result<Rc<str>, PickleError> {
        match self.pop()? {
            Value::Str(s) => Ok(s),
            other => Err(self.error(format!("expected a str on the stack, found a {}", other.kind()))),
        }
    }

    fn memo_put(&mut self, index: u32) -> Result<(), PickleError> {
        let value = self.top()?.clone();
        self.memo.insert(index, value);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<(), PickleError> {
        let value = self.memo.get(&index).cloned().ok_or_else(|| self.error(format!("memo index {index} not set")))?;
        self.stack.push(value);
        Ok(())
    }

    /// Counts elements about to be cloned by copy-on-write and refuses past the budget.
    fn charge_clone(&mut self, shared: bool, len: usize) -> Result<(), PickleError> {
        if shared {
            self.cloned = self.cloned.saturating_add(len);
            if self.cloned > MAX_CLONED_ELEMENTS {
                return Err(self.error("too many copies of shared containers (corrupt or hostile pickle)".into()));
            }
        }
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        let child_depth = items.iter().map(Value::depth).max().unwrap_or(0);
        if child_depth + 1 > MAX_DEPTH {
            return Err(self.error(format!("values nested deeper than {MAX_DEPTH} levels")));
        }
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.error("stack underflow (no dict below the items)".into()));
        }
        let (shared, len) = match self.stack.last() {
            Some(Value::Dict(map)) => (Rc::strong_count(map) > 1, map.entries.len()),
            Some(other) => return Err(self.error(format!("expected a dict below the items, found a {}", other.kind()))),
            None => return Err(self.error("stack underflow".into())),
        };
        self.charge_clone(shared, len)?;
        if let Some(Value::Dict(map)) = self.stack.last_mut() {
            let map = Rc::make_mut(map);
            map.depth = map.depth.max(child_depth + 1);
            let mut items = items.into_iter();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                map.entries.push((k, v));
            }
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        let child_depth = items.iter().map(Value::depth).max().unwrap_or(0);
        if child_depth + 1 > MAX_DEPTH {
            return Err(self.error(format!("values nested deeper than {MAX_DEPTH} levels")));
        }
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.error("stack underflow (no list below the items)".into()));
        }
        let (shared, len) = match self.stack.last() {
            Some(Value::List(seq)) => (Rc::strong_count(seq) > 1, seq.items.len()),
            Some(other) => return Err(self.error(format!("expected a list below the items, found a {}", other.kind()))),
            None => return Err(self.error("stack underflow".into())),
        };
        self.charge_clone(shared, len)?;
        if let Some(Value::List(seq)) = self.stack.last_mut() {
            let seq = Rc::make_mut(seq);
            seq.depth = seq.depth.max(child_depth + 1);
            seq.items.extend(items);
        }
        Ok(())
    }

    /// `('storage', torch.XStorage, key, location, numel)` → a storage reference.
    fn persistent_load(&self, pid: Value) -> Result<Value, PickleError> {
        let Value::Tuple(t) = &pid else {
            return Err(self.error(format!("persistent id is a {}, not a tuple", pid.kind())));
        };
        let [Value::Str(tag), Value::Global(class), Value::Str(key), Value::Str(location), Value::Int(numel)] =
            t.items.as_slice()
        else {
            return Err(self.error("persistent id is not ('storage', class, key, location, numel)".into()));
        };
        if &**tag != "storage" {
            return Err(self.error(format!("persistent id of kind `{tag}`, expected `storage`")));
        }
        let dtype = (class.module == "torch").then(|| Dtype::from_storage_class(&class.name)).flatten();
        let Some(dtype) = dtype else {
            return Err(self.error(format!("unsupported storage class `{class}`")));
        };
        let numel = usize::try_from(*numel).map_err(|_| self.error(format!("negative storage size {numel}")))?;
        Ok(Value::Storage(Rc::new(StorageRef { key: key.to_string(), dtype, location: location.to_string(), numel })))
    }

    fn reduce(&self, callable: Value, args: Value) -> Result<Value, PickleError> {
        let Value::Global(global) = callable else {
            return Err(self.error(format!("cannot call a {}", callable.kind())));
        };
        let Value::Tuple(args) = args else {
            return Err(self.error(format!("arguments of `{global}` are a {}, not a tuple", args.kind())));
        };
        match (global.module.as_str(), global.name.as_str()) {
            ("collections", "OrderedDict") if args.items.is_empty() => Ok(Value::Dict(Rc::default())),
            ("torch._utils", "_rebuild_tensor_v2") => self.rebuild_tensor(&args.items),
            // (data, requires_grad, backward_hooks): a Parameter is its tensor here.
            ("torch._utils", "_rebuild_parameter") => match args.items.first() {
                Some(tensor @ Value::Tensor(_)) if args.items.len() == 3 => Ok(tensor.clone()),
                _ => Err(self.error(format!("`{global}` expects (tensor, requires_grad, hooks)"))),
            },
            _ => Err(self.error(format!("cannot call `{global}` with {} arguments", args.items.len()))),
        }
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks[, metadata])`.
    fn rebuild_tensor(&self, args: &[Value]) -> Result<Value, PickleError> {
        let [Value::Storage(storage), Value::Int(offset), Value::Tuple(size), Value::Tuple(stride), ..] = args else {
            return Err(self.error("`_rebuild_tensor_v2` expects (storage, offset, size, stride, ...)".into()));
        };
        if !(6..=7).contains(&args.len()) {
            return Err(self.error(format!("`_rebuild_tensor_v2` with {} arguments, expected 6 or 7", args.len())));
        }
        let offset = usize::try_from(*offset).map_err(|_| self.error(format!("negative storage offset {offset}")))?;
        let shape = self.dims(&size.items, "size")?;
        let stride = self.dims(&stride.items, "stride")?;
        if shape.len() != stride.len() {
            return Err(self.error(format!("tensor of {} dimensions has {} strides", shape.len(), stride.len())));
        }
        Ok(Value::Tensor(Rc::new(TensorRef { storage: storage.clone(), offset, shape, stride })))
    }

    fn dims(&self, items: &[Value], what: &str) -> Result<Vec<usize>, PickleError> {
        items
            .iter()
            .map(|v| match v {
                Value::Int(n) => usize::try_from(*n).map_err(|_| self.error(format!("negative tensor {what} {n}"))),
                other => Err(self.error(format!("tensor {what} holds a {}, expected ints", other.kind()))),
            })
            .collect()
    }
}

/// A little-endian two's-complement integer of at most 8 bytes (LONG1's encoding).
fn long_from_le(digits: &[u8]) -> Option<i64> {
    if digits.len() > 8 {
        return None;
    }
    let Some(&last) = digits.last() else { return Some(0) };
    let fill = if last & 0x80 != 0 { 0xff } else { 0 };
    let mut buf = [fill; 8];
    buf[..digits.len()].copy_from_slice(digits);
    Some(i64::from_le_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str_op(s: &str) -> Vec<u8> {
        let mut v = vec![BINUNICODE];
        v.extend_from_slice(&(s.len() as u32).to_le_bytes());
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn int(v: &Value) -> i64 {
        match v {
            Value::Int(n) => *n,
            other => panic!("expected int, got {other:?}"),
        }
    }

    #[test]
    fn reads_scalars_of_every_width() {
        let mut p = vec![PROTO, 2, MARK, BININT1, 7, BININT2, 0x34, 0x12, BININT];
        p.extend_from_slice(&(-5i32).to_le_bytes());
        p.extend_from_slice(&[LONG1, 2, 0xff, 0x7f, LONG1, 1, 0xff, LONG1, 0, NEWTRUE, NEWFALSE, NONE, BINFLOAT]);
        p.extend_from_slice(&1.5f64.to_be_bytes());
        p.extend_from_slice(&[TUPLE, STOP]);
        let Value::Tuple(t) = load(&p).unwrap() else { panic!() };
        let items = &t.items;
        assert_eq!(int(&items[0]), 7);
        assert_eq!(int(&items[1]), 0x1234);
        assert_eq!(int(&items[2]), -5);
        assert_eq!(int(&items[3]), 0x7fff);
        assert_eq!(int(&items[4]), -1);
        assert_eq!(int(&items[5]), 0);
        assert!(matches!(items[6], Value::Bool(true)));
        assert!(matches!(items[7], Value::Bool(false)));
        assert!(matches!(items[8], Value::None));
        assert!(matches!(items[9], Value::Float(f) if f == 1.5));
    }

    #[test]
    fn reads_protocol_4_framing_strings_and_memo() {
        // FRAME, SHORT_BINUNICODE, BINUNICODE8, MEMOIZE, STACK_GLOBAL as protocol 4 writes them.
        let mut p = vec![PROTO, 4, FRAME];
        p.extend_from_slice(&100u64.to_le_bytes());
        p.extend_from_slice(&[SHORT_BINUNICODE, 11]);
        p.extend_from_slice(b"collections");
        p.extend_from_slice(&[MEMOIZE, SHORT_BINUNICODE, 11]);
        p.extend_from_slice(b"OrderedDict");
        p.extend_from_slice(&[MEMOIZE, STACK_GLOBAL, MEMOIZE, EMPTY_TUPLE, REDUCE, MEMOIZE, BINUNICODE8]);
        p.extend_from_slice(&1u64.to_le_bytes());
        p.push(b'k');
        p.extend_from_slice(&[MEMOIZE, BINGET, 0, SETITEM, STOP]);
        let Value::Dict(d) = load(&p).unwrap() else { panic!() };
        assert_eq!(d.entries.len(), 1);
        assert!(matches!(&d.entries[0], (Value::Str(k), Value::Str(v)) if &**k == "k" && &**v == "collections"));
    }

    #[test]
    fn lists_append_and_memo_copies_are_independent() {
        let p =
            [EMPTY_LIST, BINPUT, 0, BININT1, 1, APPEND, BINGET, 0, MARK, BININT1, 2, BININT1, 3, APPENDS, TUPLE2, STOP];
        let Value::Tuple(t) = load(&p).unwrap() else { panic!() };
        let lens: Vec<usize> = t
            .items
            .iter()
            .map(|v| match v {
                Value::List(s) => s.items.len(),
                _ => panic!(),
            })
            .collect();
        // The memo kept the empty list as it was at BINPUT; both copies are well-formed.
        assert_eq!(lens, [1, 2]);
    }

    #[test]
    fn rebuilds_a_tensor_from_a_persistent_id() {
        let mut p = vec![PROTO, 2, GLOBAL];
        p.extend_from_slice(b"torch._utils\n_rebuild_tensor_v2\n");
        p.extend_from_slice(&[MARK, MARK]);
        p.extend(str_op("storage"));
        p.push(GLOBAL);
        p.extend_from_slice(b"torch\nFloatStorage\n");
        p.extend(str_op("3"));
        p.extend(str_op("cpu"));
        p.extend_from_slice(&[BININT1, 6, TUPLE, BINPERSID, BININT1, 1, BININT1, 2, BININT1, 2, TUPLE2]);
        p.extend_from_slice(&[BININT1, 1, BININT1, 3, TUPLE2, NEWFALSE, GLOBAL]);
        p.extend_from_slice(b"collections\nOrderedDict\n");
        p.extend_from_slice(&[EMPTY_TUPLE, REDUCE, TUPLE, REDUCE, STOP]);
        let Value::Tensor(t) = load(&p).unwrap() else { panic!() };
        assert_eq!(t.storage.key, "3");
        assert_eq!(t.storage.dtype, Dtype::F32);
        assert_eq!(t.storage.numel, 6);
        assert_eq!((t.offset, t.shape.as_slice(), t.stride.as_slice()), (1, &[2, 2][..], &[1, 3][..]));
    }

    #[test]
    fn unknown_opcode_names_its_offset() {
        let err = load(&[PROTO, 2, NONE, 0xfe]).unwrap_err();
        assert_eq!(err.offset, 3);
        assert!(err.message.contains("unknown opcode 0xfe"), "{err}");
        let err = load(&[PROTO, 2, b'0', STOP]).unwrap_err();
        assert_eq!(err.offset, 2);
        assert!(err.message.contains("POP"), "{err}");
    }

    #[test]
    fn unknown_global_is_refused_where_it_appears() {
        let mut p = vec![PROTO, 2, GLOBAL];
        p.extend_from_slice(b"os\nsystem\n");
        let err = load(&p).unwrap_err();
        assert_eq!(err.offset, 2);
        assert!(err.message.contains("GLOBAL") && err.message.contains("`os.system`"), "{err}");
    }

    #[test]
    fn truncated_and_underflowing_input_are_errors() {
        assert!(load(&[]).unwrap_err().message.contains("STOP"));
        assert!(load(&[BINUNICODE, 9, 0, 0, 0, b'a']).unwrap_err().message.contains("past the end"));
        assert!(load(&[STOP]).unwrap_err().message.contains("underflow"));
        assert!(load(&[NONE, MARK, TUPLE1, STOP]).unwrap_err().message.contains("underflow"));
        assert!(load(&[MARK, STOP]).unwrap_err().message.contains("underflow"));
        assert!(load(&[BINGET, 4, STOP]).unwrap_err().message.contains("memo index 4"));
        assert!(load(&[LONG1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, STOP]).unwrap_err().message.contains("too large"));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut p = vec![EMPTY_TUPLE];
        p.extend(std::iter::repeat_n(TUPLE1, 100_000));
        p.push(STOP);
        let err = load(&p).unwrap_err();
        assert!(err.message.contains("nested deeper"), "{err}");
    }

    #[test]
    fn repeated_copy_on_write_is_bounded() {
        // Each round fetches the memoised list and appends to it, so every APPEND clones it.
        let mut p = vec![EMPTY_LIST, BINPUT, 0];
        for _ in 0..20_000 {
            p.extend_from_slice(&[BINGET, 0, NONE, APPEND, BINPUT, 0]);
        }
        p.push(STOP);
        let err = load(&p).unwrap_err();
        assert!(err.message.contains("too many copies"), "{err}");
    }
}
