"""moto's server, with one AWS default moto leaves out on purpose.

Real AWS reports ``idle_timeout.timeout_seconds`` (60) for every new Application Load
Balancer; moto omits it ("for Terraform compatibility"), and amazon.aws.elb_application_lb
reads it when it compares the idle timeout. This adds the default back, as AWS has it, then
runs moto's own server entry point with the same arguments (``moto_server -H ... -p ...``).
"""

from __future__ import annotations

import sys

from moto.elbv2.models import FakeLoadBalancer
from moto.server import main

_original_init = FakeLoadBalancer.__init__


def _init_with_aws_defaults(self, *args, **kwargs):
    _original_init(self, *args, **kwargs)
    self.attrs.setdefault("idle_timeout.timeout_seconds", "60")


FakeLoadBalancer.__init__ = _init_with_aws_defaults

if __name__ == "__main__":
    main(sys.argv[1:])
