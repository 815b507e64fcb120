"""twistd finds mucauth here: ``twistd -n mucauth --config tap.conf``."""

from twisted.application.service import ServiceMaker

mucauth = ServiceMaker(
    "mucauth",
    "mucauth.tap",
    "XEP-0045 Multi-User Chat component whose joins an HTTP service authorizes",
    "mucauth",
)
