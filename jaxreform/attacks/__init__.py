"""Privacy attacks that jaxreform's defences are judged against.

Each attack lives in its own submodule (import it from there); all of them are pure
functions over parameter pytrees so that they can be jitted and vmapped.
"""
