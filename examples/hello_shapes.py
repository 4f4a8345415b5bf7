"""What a recurrent layer returns, shape by shape (study note 002, the one-hot 'hello' batch).

Three one-hot encoded 5-character words ('hello', 'eolll', 'lleel') over the alphabet
h, e, l, o make a batch of shape (3, 5, 4) = (N, T, D). A `SimpleRNN(2)` (H = 2) is run on it
with each combination of `return_sequences` and `return_state`:

    return_sequences=True,  return_state=True   -> outputs (3, 5, 2), state (3, 2)
    return_sequences=True,  return_state=False  -> outputs (3, 5, 2)
    return_sequences=False, return_state=False  -> outputs (3, 2)
    return_sequences=False, return_state=True   -> outputs (3, 2), state (3, 2)

and the script checks that the returned state is the output of the last time step. Nothing is
trained (the note trains nothing either), so there is no `--epochs`; the weights are random,
drawn from `--seed`. No files are written.

    python examples/hello_shapes.py
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from seqcast.layers import LSTM, SimpleRNN

# One-hot encoding of each character of 'hello'.
h = [1, 0, 0, 0]
e = [0, 1, 0, 0]
l = [0, 0, 1, 0]  # noqa: E741 (the note's name for the letter)
o = [0, 0, 0, 1]


def hello_batch() -> torch.Tensor:
    """The batch 'hello', 'eolll', 'lleel': (N, T, D) = (3, 5, 4)."""
    # fmt: off
    x = np.array([[h, e, l, l, o],
                  [e, o, l, l, l],
                  [l, l, e, e, l]], dtype=np.float32)
    # fmt: on
    return torch.from_numpy(x)


def show(name: str, tensor: torch.Tensor, comment: str) -> None:
    print(f"{name}: shape {tuple(tensor.shape)}  # {comment}")
    print(np.array2string(tensor.numpy(), precision=4, suppress_small=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    np.set_printoptions(precision=4, suppress=True)

    x = hello_batch()
    print(f"x_data: shape {tuple(x.shape)}  # (N, T, D)")
    hidden_size = 2  # H

    with torch.no_grad():
        print("\n[1] SimpleRNN(2, return_sequences=True, return_state=True)")
        rnn = SimpleRNN(hidden_size, return_sequences=True, return_state=True)
        outputs, state = rnn(x)  # a seqcast layer builds itself on its first input
        show("outputs", outputs, "(N, T, H)")
        show("states", state, "(N, H)")
        same = torch.equal(state, outputs[:, -1])
        print(f"final state equals the last output (outputs[:, -1]): {same}")

        print("\n[2] SimpleRNN(2, return_sequences=True, return_state=False)")
        outputs = SimpleRNN(hidden_size, return_sequences=True)(x)  # no state returned
        show("outputs", outputs, "(N, T, H)")

        print("\n[3] SimpleRNN(2, return_sequences=False)")
        outputs = SimpleRNN(hidden_size)(x)  # only the last step: 2-D
        show("outputs", outputs, "(N, H)")

        print("\n[4] SimpleRNN(2, return_sequences=False, return_state=True)")
        outputs, state = SimpleRNN(hidden_size, return_state=True)(x)
        show("outputs", outputs, "(N, H)")
        show("states", state, "(N, H)")
        print(f"final state equals the output: {torch.equal(state, outputs)}")

        # Not in the note, for contrast: an LSTM carries two states, h (= the output) and c.
        print("\n[5] LSTM(2, return_state=True) returns (output, h, c)")
        outputs, state_h, state_c = LSTM(hidden_size, return_state=True)(x)
        print(
            f"outputs {tuple(outputs.shape)}, h {tuple(state_h.shape)}, "
            f"c {tuple(state_c.shape)}; h equals the output: {torch.equal(state_h, outputs)}"
        )


if __name__ == "__main__":
    main()
