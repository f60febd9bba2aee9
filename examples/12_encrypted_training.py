"""Tutorial Part 12, "Train an Encrypted Neural Network on Encrypted Data", with zsyft.

Every code cell of the tutorial, in order, with `import zsyft as sy` in place of
`import syft as sy`. alice, bob and james are worker processes: the data, the targets and
the model are secret-shared between bob and alice, james is the crypto provider that deals
the correlated randomness for multiplications and ReLU. Next to each encrypted loss, the loss
of the same network trained in plaintext from the same initial weights (as the tutorial
suggests) shows that the only difference is fixed-point rounding.

    python examples/12_encrypted_training.py
"""

import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

import zsyft as sy

# Set everything up
hook = sy.TorchHook(torch)

alice = sy.VirtualWorker(id="alice", hook=hook)
bob = sy.VirtualWorker(id="bob", hook=hook)
james = sy.VirtualWorker(id="james", hook=hook)

# A Toy Dataset
data = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1.0]])
target = torch.tensor([[0], [0], [1], [1.0]])


# A Toy Model
class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()  # noqa: UP008 (the tutorial's spelling)
        self.fc1 = nn.Linear(2, 2)
        self.fc2 = nn.Linear(2, 1)
        # The tutorial's fixed initial weights, so plaintext training can be compared.
        with torch.no_grad():
            self.fc1.weight.set_(torch.tensor([[0.0738, -0.2109], [-0.1579, 0.3174]]))
            self.fc1.bias.set_(torch.tensor([0.0, 0.1]))
            self.fc2.weight.set_(torch.tensor([[-0.5368, 0.7050]]))
            self.fc2.bias.set_(torch.tensor([-0.0343]))

    def forward(self, x):
        x = self.fc1(x)
        x = F.relu(x)
        x = self.fc2(x)
        return x


model = Net()
plain_model, plain_data, plain_target = Net(), data.clone(), target.clone()

# We encode everything
data = data.fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)
target = target.fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)
model = model.fix_precision().share(bob, alice, crypto_provider=james, requires_grad=True)

print(data)

opt = optim.SGD(params=model.parameters(), lr=0.1).fix_precision()
plain_opt = optim.SGD(params=plain_model.parameters(), lr=0.1)

started = time.perf_counter()
for iter in range(20):
    # 1) erase previous gradients (if they exist)
    opt.zero_grad()

    # 2) make a prediction
    pred = model(data)

    # 3) calculate how much we missed
    loss = ((pred - target) ** 2).sum()

    # 4) figure out which weights caused us to miss
    loss.backward()

    # 5) change those weights
    opt.step()

    # 6) print our progress
    encrypted_loss = loss.get().float_precision()

    plain_opt.zero_grad()
    plain_loss = ((plain_model(plain_data) - plain_target) ** 2).sum()
    plain_loss.backward()
    plain_opt.step()
    print(f"iter {iter:2d}  encrypted loss {encrypted_loss.item():.4f}  "
          f"plaintext loss {plain_loss.item():.4f}")

print(f"20 encrypted training iterations in {time.perf_counter() - started:.2f} s")
