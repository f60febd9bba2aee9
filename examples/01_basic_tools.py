"""Tutorial Part 1, "The Basic Tools of Private Deep Learning", with zsyft.

Every code cell of the tutorial, in order, with `import zsyft as sy` in place of
`import syft as sy`. bob is a real worker process: the tensors below live in its memory
until `.get()` brings them back.

    python examples/01_basic_tools.py
"""

import torch
import torch.nn as nn  # noqa: F401  (imported by the tutorial's first cell)
import torch.nn.functional as F  # noqa: F401
from torch.nn import Parameter  # noqa: F401

import zsyft as sy


def cell(title: str) -> None:
    print(f"\n# {title}")


cell("Part 0: setup")
hook = sy.TorchHook(torch)
print(torch.tensor([1, 2, 3, 4, 5]))

cell("Part 1: local tensors")
x = torch.tensor([1, 2, 3, 4, 5])
y = x + x
print(y)

cell("Section 1.1 - Sending Tensors to Bob's Machine")
bob = sy.VirtualWorker(hook, id="bob")
print(bob, "pid", bob.pid)
x = torch.tensor([1, 2, 3, 4, 5])
y = torch.tensor([1, 1, 1, 1, 1])
x_ptr = x.send(bob)
y_ptr = y.send(bob)
print(x_ptr)
print(bob._objects)
z = x_ptr + x_ptr
print(z)
print(bob._objects)

cell("pointer metadata")
print(x_ptr)
print(x_ptr.location)
print(bob)
print(bob == x_ptr.location)
print(x_ptr.id_at_location)
print(x_ptr.owner)
me = sy.local_worker
print(me)
print(me == x_ptr.owner)

cell("get() brings the tensors back")
print(x_ptr)
print(x_ptr.get())
print(y_ptr)
print(y_ptr.get())
print(z.get())
print(bob._objects)

cell("Section 1.2 - Using Tensor Pointers")
x = torch.tensor([1, 2, 3, 4, 5]).send(bob)
y = torch.tensor([1, 1, 1, 1, 1]).send(bob)
z = x + y
print(z)
print(z.get())

cell("Torch functions")
print(x)
print(y)
z = torch.add(x, y)
print(z)
print(z.get())

cell("Variables (including backpropagation!)")
x = torch.tensor([1, 2, 3, 4, 5.0], requires_grad=True).send(bob)
y = torch.tensor([1, 1, 1, 1, 1.0], requires_grad=True).send(bob)
z = (x + y).sum()
z.backward()
x = x.get()
print(x)
print(x.grad)
