"""The translation memory as a product: import (TMX, TSV), export (TMX) and purge, per key (``/v1/memory``)."""
