module dashnas.dev/samples/fashionmnist

go 1.19

require dashnas.dev/dashnas v0.0.0

replace dashnas.dev/dashnas => ../../bindings/go
