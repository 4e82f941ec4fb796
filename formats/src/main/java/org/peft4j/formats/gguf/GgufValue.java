package org.peft4j.formats.gguf;

import org.peft4j.core.Peft4jException.FormatException;

import java.util.Arrays;
import java.util.Objects;

/// One typed GGUF metadata value. Scalars: integer types as a `Long` (unsigned ones zero-extended, UINT64 as its
/// raw bits), FLOAT32 as `Float`, FLOAT64 as `Double`, BOOL as `Boolean`, STRING as `String`. An ARRAY has an
/// `elementType` (never ARRAY: ggml rejects nested arrays) and holds `long[]`, `float[]`, `double[]`, `boolean[]`
/// or `String[]` in the same way. Reference: ggml `docs/gguf.md`, `src/gguf.cpp`; specs.md §4.1.
public record GgufValue(GgufValueType type, GgufValueType elementType, Object value) {
    public GgufValue {
        Objects.requireNonNull(type, "type");
        Objects.requireNonNull(value, "value");
        if ((type == GgufValueType.ARRAY) != (elementType != null))
            throw new IllegalArgumentException("an element type is given exactly for ARRAY values, got " + type + "/" + elementType);
        if (elementType == GgufValueType.ARRAY)
            throw new IllegalArgumentException("GGUF arrays of arrays are not readable by ggml; flatten the array");
        Class<?> want = type == GgufValueType.ARRAY ? arrayClass(elementType) : scalarClass(type);
        if (!want.isInstance(value))
            throw new IllegalArgumentException("a GGUF " + type + (elementType == null ? "" : " of " + elementType) + " holds a "
                    + want.getSimpleName() + ", got " + value.getClass().getSimpleName());
    }

    private static Class<?> scalarClass(GgufValueType t) {
        return switch (t) {
            case FLOAT32 -> Float.class; case FLOAT64 -> Double.class; case BOOL -> Boolean.class; case STRING -> String.class;
            case ARRAY -> throw new IllegalStateException();
            default -> Long.class;
        };
    }

    private static Class<?> arrayClass(GgufValueType t) {
        return switch (t) {
            case FLOAT32 -> float[].class; case FLOAT64 -> double[].class; case BOOL -> boolean[].class; case STRING -> String[].class;
            case ARRAY -> throw new IllegalStateException();
            default -> long[].class;
        };
    }

    public static GgufValue u8(int v) { return integer(GgufValueType.UINT8, v); }
    public static GgufValue i8(int v) { return integer(GgufValueType.INT8, v); }
    public static GgufValue u16(int v) { return integer(GgufValueType.UINT16, v); }
    public static GgufValue i16(int v) { return integer(GgufValueType.INT16, v); }
    public static GgufValue u32(long v) { return integer(GgufValueType.UINT32, v); }
    public static GgufValue i32(int v) { return integer(GgufValueType.INT32, v); }
    public static GgufValue u64(long v) { return new GgufValue(GgufValueType.UINT64, null, v); }
    public static GgufValue i64(long v) { return new GgufValue(GgufValueType.INT64, null, v); }
    public static GgufValue f32(float v) { return new GgufValue(GgufValueType.FLOAT32, null, v); }
    public static GgufValue f64(double v) { return new GgufValue(GgufValueType.FLOAT64, null, v); }
    public static GgufValue bool(boolean v) { return new GgufValue(GgufValueType.BOOL, null, v); }
    public static GgufValue string(String v) { return new GgufValue(GgufValueType.STRING, null, v); }
    public static GgufValue strings(String... v) { return new GgufValue(GgufValueType.ARRAY, GgufValueType.STRING, v.clone()); }
    public static GgufValue f32s(float... v) { return new GgufValue(GgufValueType.ARRAY, GgufValueType.FLOAT32, v.clone()); }
    public static GgufValue f64s(double... v) { return new GgufValue(GgufValueType.ARRAY, GgufValueType.FLOAT64, v.clone()); }
    public static GgufValue bools(boolean... v) { return new GgufValue(GgufValueType.ARRAY, GgufValueType.BOOL, v.clone()); }
    public static GgufValue i32s(int... v) { return ints(GgufValueType.INT32, Arrays.stream(v).asLongStream().toArray()); }

    /// An array of integers of `elementType`, each checked to fit it.
    public static GgufValue ints(GgufValueType elementType, long... v) {
        for (long x : v) checkRange(elementType, x);
        return new GgufValue(GgufValueType.ARRAY, elementType, v.clone());
    }

    private static GgufValue integer(GgufValueType t, long v) {
        checkRange(t, v);
        return new GgufValue(t, null, v);
    }

    private static void checkRange(GgufValueType t, long v) {
        long lo, hi;
        switch (t) {
            case UINT8 -> { lo = 0; hi = 0xFF; }
            case INT8 -> { lo = Byte.MIN_VALUE; hi = Byte.MAX_VALUE; }
            case UINT16 -> { lo = 0; hi = 0xFFFF; }
            case INT16 -> { lo = Short.MIN_VALUE; hi = Short.MAX_VALUE; }
            case UINT32 -> { lo = 0; hi = 0xFFFF_FFFFL; }
            case INT32 -> { lo = Integer.MIN_VALUE; hi = Integer.MAX_VALUE; }
            case UINT64, INT64 -> { return; }
            default -> throw new IllegalArgumentException(t + " is not an integer type");
        }
        if (v < lo || v > hi) throw new IllegalArgumentException(v + " does not fit a GGUF " + t + " [" + lo + ", " + hi + "]");
    }

    /// The value as a long: any integer type (UINT64 above 2^63 as its negative bits), or a BOOL as 0/1.
    public long asLong(String key) {
        if (type.integer()) return (Long) value;
        if (type == GgufValueType.BOOL) return (Boolean) value ? 1 : 0;
        throw wrong(key, "an integer");
    }

    /// An integer value that fits an int ≥ 0 (counts, dimensions, token ids).
    public int asInt(String key) {
        long v = asLong(key);
        if (v < 0 || v > Integer.MAX_VALUE) throw new FormatException("GGUF key '" + key + "' = " + v
                + " is outside [0, 2^31); the file is corrupt or describes a model too large for peft4j");
        return (int) v;
    }

    public double asDouble(String key) {
        if (type == GgufValueType.FLOAT32) return (Float) value;
        if (type == GgufValueType.FLOAT64) return (Double) value;
        if (type.integer()) return (Long) value;
        throw wrong(key, "a number");
    }

    public boolean asBool(String key) {
        if (type == GgufValueType.BOOL) return (Boolean) value;
        throw wrong(key, "a BOOL");
    }

    public String asString(String key) {
        if (type == GgufValueType.STRING) return (String) value;
        throw wrong(key, "a STRING");
    }

    public String[] asStrings(String key) {
        if (elementType == GgufValueType.STRING) return (String[]) value;
        throw wrong(key, "an ARRAY of STRING");
    }

    public float[] asFloats(String key) {
        if (elementType == GgufValueType.FLOAT32) return (float[]) value;
        throw wrong(key, "an ARRAY of FLOAT32");
    }

    /// An integer array as ints (each must fit).
    public int[] asInts(String key) {
        if (elementType == null || !elementType.integer()) throw wrong(key, "an ARRAY of integers");
        long[] v = (long[]) value;
        int[] out = new int[v.length];
        for (int i = 0; i < v.length; i++) {
            if (v[i] < Integer.MIN_VALUE || v[i] > Integer.MAX_VALUE)
                throw new FormatException("GGUF key '" + key + "'[" + i + "] = " + v[i] + " does not fit a 32-bit integer");
            out[i] = (int) v[i];
        }
        return out;
    }

    /// Number of elements of an ARRAY (1 for a scalar).
    public int length() {
        if (type != GgufValueType.ARRAY) return 1;
        return switch (value) {
            case long[] a -> a.length; case float[] a -> a.length; case double[] a -> a.length;
            case boolean[] a -> a.length; case String[] a -> a.length;
            default -> throw new IllegalStateException();
        };
    }

    private FormatException wrong(String key, String want) {
        return new FormatException("GGUF key '" + key + "' is " + describe() + ", expected " + want
                + "; the file was not written for this architecture or is corrupt");
    }

    /// "UINT32", "ARRAY of STRING (3)" …
    public String describe() {
        return type == GgufValueType.ARRAY ? "ARRAY of " + elementType + " (" + length() + ")" : type.toString();
    }

    @Override public boolean equals(Object o) {
        return o instanceof GgufValue v && type == v.type && elementType == v.elementType
                && Arrays.deepEquals(new Object[]{value}, new Object[]{v.value});
    }

    @Override public int hashCode() { return Objects.hash(type, elementType, Arrays.deepHashCode(new Object[]{value})); }

    @Override public String toString() {
        if (type != GgufValueType.ARRAY) return type + " " + value;
        String s = Arrays.deepToString(new Object[]{value});
        return describe() + " " + (s.length() > 120 ? s.substring(1, 117) + "...]" : s.substring(1, s.length() - 1));
    }
}
