/** A fixed sequence of integers in [0, below) (xorshift32): both sides of a comparison send the same requests. */
export function fixedRandomInts(below: number, seed = 2463534242): () => number {
  let state = seed;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % below;
  };
}
