package main

// The travel suite: a booking service's directory of hotels, restaurants,
// car rental companies and flights, the user's profile, calendar and
// mailbox, and the reservations made for the user. The tools have the names,
// arguments and meaning of AgentDojo's travel suite (v1.2); their answers
// are objects rather than prose.
//
// Who wrote what: the directory's facts (names, addresses, prices, hours,
// cuisines, fuel options, flights) come from the booking service the user
// relies on, and the user's profile, calendar and mail are the user's own.
// Reviews are written by strangers, so a tool that returns reviews answers
// ThirdParty.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func init() { suites["travel"] = registertravel }

// travelState is the travel environment.
type travelState struct {
	User         travelUser          `json:"user"`
	Hotels       []travelHotel       `json:"hotels"`
	Restaurants  []travelRestaurant  `json:"restaurants"`
	CarRentals   []travelCarRental   `json:"car_rentals"`
	Flights      []travelFlight      `json:"flights"`
	Calendar     travelCalendar      `json:"calendar"`
	Mailbox      travelMailbox       `json:"mailbox"`
	Reservations []travelReservation `json:"reservations"`
}

type travelUser struct {
	FirstName         string `json:"first_name"`
	LastName          string `json:"last_name"`
	IDNumber          string `json:"id_number"`
	Email             string `json:"email"`
	PhoneNumber       string `json:"phone_number"`
	Address           string `json:"address"`
	PassportNumber    string `json:"passport_number"`
	BankAccountNumber string `json:"bank_account_number"`
	CreditCardNumber  string `json:"credit_card_number"`
}

type travelHotel struct {
	Name     string   `json:"name"`
	City     string   `json:"city"`
	Rating   float64  `json:"rating"`
	PriceMin float64  `json:"price_min"`
	PriceMax float64  `json:"price_max"`
	Address  string   `json:"address"`
	Reviews  []string `json:"reviews"`
}

type travelRestaurant struct {
	Name                string   `json:"name"`
	City                string   `json:"city"`
	Address             string   `json:"address"`
	Rating              float64  `json:"rating"`
	PricePerPerson      float64  `json:"price_per_person"`
	OperatingHours      string   `json:"operating_hours"`
	Reviews             []string `json:"reviews"`
	ContactInformation  string   `json:"contact_information"`
	CuisineType         string   `json:"cuisine_type"`
	DietaryRestrictions string   `json:"dietary_restrictions"`
}

type travelCarRental struct {
	Name               string   `json:"name"`
	City               string   `json:"city"`
	Address            string   `json:"address"`
	Rating             float64  `json:"rating"`
	PricePerDay        float64  `json:"price_per_day"`
	Reviews            []string `json:"reviews"`
	ContactInformation string   `json:"contact_information"`
	CarTypesAvailable  []string `json:"car_types_available"`
	FuelOptions        []string `json:"fuel_options"`
}

type travelFlight struct {
	Airline            string  `json:"airline"`
	FlightNumber       string  `json:"flight_number"`
	DepartureCity      string  `json:"departure_city"`
	ArrivalCity        string  `json:"arrival_city"`
	DepartureTime      string  `json:"departure_time"`
	ArrivalTime        string  `json:"arrival_time"`
	Price              float64 `json:"price"`
	ContactInformation string  `json:"contact_information"`
}

type travelCalendar struct {
	Owner  string        `json:"owner"`
	Today  string        `json:"today"`
	Events []travelEvent `json:"events"`
}

type travelEvent struct {
	ID           string   `json:"id"`
	Title        string   `json:"title"`
	Description  string   `json:"description"`
	StartTime    string   `json:"start_time" jsonschema:"YYYY-MM-DD HH:MM"`
	EndTime      string   `json:"end_time" jsonschema:"YYYY-MM-DD HH:MM"`
	Location     string   `json:"location"`
	Participants []string `json:"participants"`
	Status       string   `json:"status" jsonschema:"confirmed or canceled"`
}

type travelMailbox struct {
	Address string        `json:"address"`
	Emails  []travelEmail `json:"emails"`
}

type travelEmail struct {
	ID          string           `json:"id"`
	Sender      string           `json:"sender"`
	Recipients  []string         `json:"recipients"`
	Cc          []string         `json:"cc"`
	Bcc         []string         `json:"bcc"`
	Subject     string           `json:"subject"`
	Body        string           `json:"body"`
	Attachments []map[string]any `json:"attachments"`
	Status      string           `json:"status" jsonschema:"received or sent"`
	Timestamp   string           `json:"timestamp"`
}

type travelReservation struct {
	Kind               string `json:"kind" jsonschema:"hotel, car or restaurant"`
	Title              string `json:"title" jsonschema:"the hotel, company or restaurant"`
	Start              string `json:"start"`
	End                string `json:"end"`
	ContactInformation string `json:"contact_information" jsonschema:"the phone number the reservation was made with"`
}

// Inputs.

type cityIn struct {
	City string `json:"city" jsonschema:"the city"`
}

type hotelNamesIn struct {
	HotelNames []string `json:"hotel_names" jsonschema:"the names of the hotels"`
}

type hotelNameIn struct {
	HotelName string `json:"hotel_name" jsonschema:"the name of the hotel"`
}

type restaurantNamesIn struct {
	RestaurantNames []string `json:"restaurant_names" jsonschema:"the names of the restaurants"`
}

type companyNamesIn struct {
	CompanyName []string `json:"company_name" jsonschema:"the names of the car rental companies"`
}

type noIn struct{}

type flightIn struct {
	DepartureCity string `json:"departure_city" jsonschema:"the city to depart from"`
	ArrivalCity   string `json:"arrival_city" jsonschema:"the city to arrive at"`
}

type createEventIn struct {
	Title        string   `json:"title" jsonschema:"the title of the event"`
	StartTime    string   `json:"start_time" jsonschema:"the start, YYYY-MM-DD HH:MM"`
	EndTime      string   `json:"end_time" jsonschema:"the end, YYYY-MM-DD HH:MM"`
	Description  string   `json:"description,omitempty" jsonschema:"the description of the event"`
	Participants []string `json:"participants,omitempty" jsonschema:"the participants' addresses; each is sent an invitation; the owner is always a participant"`
	Location     string   `json:"location,omitempty" jsonschema:"where the event takes place"`
}

type searchEventsIn struct {
	Query string `json:"query" jsonschema:"text to find in the title or the description"`
	Date  string `json:"date,omitempty" jsonschema:"only events on this day, YYYY-MM-DD"`
}

type dayIn struct {
	Day string `json:"day" jsonschema:"the day, YYYY-MM-DD"`
}

type eventIDIn struct {
	EventID string `json:"event_id" jsonschema:"the ID of the event"`
}

type reserveHotelIn struct {
	Hotel    string `json:"hotel" jsonschema:"the name of the hotel, and nothing else"`
	StartDay string `json:"start_day" jsonschema:"the check-in day, YYYY-MM-DD"`
	EndDay   string `json:"end_day" jsonschema:"the check-out day, YYYY-MM-DD"`
}

type reserveCarIn struct {
	Company   string `json:"company" jsonschema:"the name of the car rental company, and nothing else"`
	StartTime string `json:"start_time" jsonschema:"the start of the rental, YYYY-MM-DD HH:MM"`
	EndTime   string `json:"end_time" jsonschema:"the end of the rental, YYYY-MM-DD HH:MM"`
}

type reserveRestaurantIn struct {
	Restaurant string `json:"restaurant" jsonschema:"the name of the restaurant, and nothing else"`
	StartTime  string `json:"start_time" jsonschema:"the time of the reservation, YYYY-MM-DD HH:MM; it lasts two hours"`
}

type sendEmailIn struct {
	Recipients  []string         `json:"recipients" jsonschema:"the recipients' addresses"`
	Subject     string           `json:"subject" jsonschema:"the subject"`
	Body        string           `json:"body" jsonschema:"the body"`
	Attachments []map[string]any `json:"attachments,omitempty" jsonschema:"attachments: {type: file, file_id} or {type: event, event_details}"`
	Cc          []string         `json:"cc,omitempty" jsonschema:"addresses in copy"`
	Bcc         []string         `json:"bcc,omitempty" jsonschema:"addresses in blind copy"`
}

// Outputs.

type restaurantCuisine struct {
	Name        string `json:"name"`
	CuisineType string `json:"cuisine_type"`
}

type restaurantDiet struct {
	Name                string `json:"name"`
	DietaryRestrictions string `json:"dietary_restrictions"`
}

type restaurantContact struct {
	Name               string `json:"name"`
	ContactInformation string `json:"contact_information"`
}

type restaurantPrice struct {
	Name           string  `json:"name"`
	PricePerPerson float64 `json:"price_per_person"`
}

type restaurantHour struct {
	Name           string `json:"name"`
	OperatingHours string `json:"operating_hours"`
}

type companyCarType struct {
	Name              string   `json:"name"`
	CarTypesAvailable []string `json:"car_types_available"`
}

type companyFuelOption struct {
	Name        string   `json:"name"`
	FuelOptions []string `json:"fuel_options"`
}

type companyPrice struct {
	Name        string  `json:"name"`
	PricePerDay float64 `json:"price_per_day"`
}

type hotelsInCity struct {
	City   string   `json:"city"`
	Hotels []string `json:"hotels"`
}

type hotelPrice struct {
	Name     string  `json:"name"`
	PriceMin float64 `json:"price_min"`
	PriceMax float64 `json:"price_max"`
}

type hotelPrices struct {
	Hotels []hotelPrice `json:"hotels"`
}

type nameAddress struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

type ratingReviews struct {
	Name    string   `json:"name"`
	Rating  float64  `json:"rating"`
	Reviews []string `json:"reviews"`
}

type hotelReviews struct {
	Hotels []ratingReviews `json:"hotels"`
}

type restaurantsInCity struct {
	City        string   `json:"city"`
	Restaurants []string `json:"restaurants"`
}

type restaurantReviews struct {
	Restaurants []ratingReviews `json:"restaurants"`
}

type restaurantAddresses struct {
	Restaurants []nameAddress `json:"restaurants"`
}

type restaurantCuisines struct {
	Restaurants []restaurantCuisine `json:"restaurants"`
}

type restaurantDiets struct {
	Restaurants []restaurantDiet `json:"restaurants"`
}

type restaurantContacts struct {
	Restaurants []restaurantContact `json:"restaurants"`
}

type restaurantPrices struct {
	Restaurants []restaurantPrice `json:"restaurants"`
}

type restaurantHours struct {
	Restaurants []restaurantHour `json:"restaurants"`
}

type companiesInCity struct {
	City      string   `json:"city"`
	Companies []string `json:"companies"`
}

type companyCarTypes struct {
	Companies []companyCarType `json:"companies"`
}

type companyFuel struct {
	Companies []companyFuelOption `json:"companies"`
}

type companyReviews struct {
	Companies []ratingReviews `json:"companies"`
}

type companyAddresses struct {
	Companies []nameAddress `json:"companies"`
}

type companyPrices struct {
	Companies []companyPrice `json:"companies"`
}

type flightList struct {
	Flights []travelFlight `json:"flights"`
}

type eventList struct {
	Events []travelEvent `json:"events"`
}

type eventCanceled struct {
	EventID string `json:"event_id"`
	Status  string `json:"status"`
}

type reservationMade struct {
	Reservation travelReservation `json:"reservation"`
	Message     string            `json:"message"`
}

func registertravel(s *mcp.Server, e *Env) {
	view := func() (*travelState, error) { return View[travelState](e) }

	Tool(s, e, &mcp.Tool{Name: "get_user_information", Description: "Get the user's information: name, ID number, email, phone number, address, passport number, bank account number and credit card number, as used to book hotels, restaurants, cars and flights."},
		func(_ context.Context, _ noIn) (travelUser, Origin, error) {
			st, err := view()
			if err != nil {
				return travelUser{}, Own, err
			}
			return st.User, Own, nil
		})

	// Hotels.
	Tool(s, e, &mcp.Tool{Name: "get_all_hotels_in_city", Description: "Get the names of all hotels in the given city."},
		func(_ context.Context, in cityIn) (hotelsInCity, Origin, error) {
			st, err := view()
			if err != nil {
				return hotelsInCity{}, Own, err
			}
			out := hotelsInCity{City: in.City, Hotels: []string{}}
			for _, h := range st.Hotels {
				if h.City == in.City {
					out.Hotels = append(out.Hotels, h.Name)
				}
			}
			return out, Own, nil
		})
	Tool(s, e, &mcp.Tool{Name: "get_hotels_prices", Description: "Get the price range per night of the given hotels."},
		func(_ context.Context, in hotelNamesIn) (hotelPrices, Origin, error) {
			st, err := view()
			if err != nil {
				return hotelPrices{}, Own, err
			}
			out := hotelPrices{Hotels: []hotelPrice{}}
			for _, h := range st.Hotels {
				if slices.Contains(in.HotelNames, h.Name) {
					out.Hotels = append(out.Hotels, hotelPrice{h.Name, h.PriceMin, h.PriceMax})
				}
			}
			return out, Own, nil
		})
	Tool(s, e, &mcp.Tool{Name: "get_hotels_address", Description: "Get the address of the given hotel."},
		func(_ context.Context, in hotelNameIn) (nameAddress, Origin, error) {
			st, err := view()
			if err != nil {
				return nameAddress{}, Own, err
			}
			for _, h := range st.Hotels {
				if h.Name == in.HotelName {
					return nameAddress{h.Name, h.Address}, Own, nil
				}
			}
			return nameAddress{}, Own, fmt.Errorf("no hotel is named %q", in.HotelName)
		})
	Tool(s, e, &mcp.Tool{Name: "get_rating_reviews_for_hotels", Description: "Get the rating and the guests' reviews of the given hotels."},
		func(_ context.Context, in hotelNamesIn) (hotelReviews, Origin, error) {
			st, err := view()
			if err != nil {
				return hotelReviews{}, Own, err
			}
			out := hotelReviews{Hotels: []ratingReviews{}}
			for _, h := range st.Hotels {
				if slices.Contains(in.HotelNames, h.Name) {
					out.Hotels = append(out.Hotels, ratingReviews{h.Name, h.Rating, nonNil(h.Reviews)})
				}
			}
			return out, reviewsOrigin(len(out.Hotels)), nil
		})

	// Restaurants.
	restaurants := func(names []string, fn func(travelRestaurant)) error {
		st, err := view()
		if err != nil {
			return err
		}
		for _, r := range st.Restaurants {
			if slices.Contains(names, r.Name) {
				fn(r)
			}
		}
		return nil
	}
	Tool(s, e, &mcp.Tool{Name: "get_all_restaurants_in_city", Description: "Get the names of all restaurants in the given city."},
		func(_ context.Context, in cityIn) (restaurantsInCity, Origin, error) {
			st, err := view()
			if err != nil {
				return restaurantsInCity{}, Own, err
			}
			out := restaurantsInCity{City: in.City, Restaurants: []string{}}
			for _, r := range st.Restaurants {
				if r.City == in.City {
					out.Restaurants = append(out.Restaurants, r.Name)
				}
			}
			return out, Own, nil
		})
	Tool(s, e, &mcp.Tool{Name: "get_cuisine_type_for_restaurants", Description: "Get the cuisine of the given restaurants."},
		func(_ context.Context, in restaurantNamesIn) (restaurantCuisines, Origin, error) {
			var out restaurantCuisines
			out.Restaurants = []restaurantCuisine{}
			err := restaurants(in.RestaurantNames, func(r travelRestaurant) {
				out.Restaurants = append(out.Restaurants, restaurantCuisine{r.Name, r.CuisineType})
			})
			return out, Own, err
		})
	Tool(s, e, &mcp.Tool{Name: "get_restaurants_address", Description: "Get the address of the given restaurants."},
		func(_ context.Context, in restaurantNamesIn) (restaurantAddresses, Origin, error) {
			out := restaurantAddresses{Restaurants: []nameAddress{}}
			err := restaurants(in.RestaurantNames, func(r travelRestaurant) {
				out.Restaurants = append(out.Restaurants, nameAddress{r.Name, r.Address})
			})
			return out, Own, err
		})
	Tool(s, e, &mcp.Tool{Name: "get_rating_reviews_for_restaurants", Description: "Get the rating and the guests' reviews of the given restaurants."},
		func(_ context.Context, in restaurantNamesIn) (restaurantReviews, Origin, error) {
			out := restaurantReviews{Restaurants: []ratingReviews{}}
			err := restaurants(in.RestaurantNames, func(r travelRestaurant) {
				out.Restaurants = append(out.Restaurants, ratingReviews{r.Name, r.Rating, nonNil(r.Reviews)})
			})
			return out, reviewsOrigin(len(out.Restaurants)), err
		})
	Tool(s, e, &mcp.Tool{Name: "get_dietary_restrictions_for_all_restaurants", Description: "Get the dietary options of the given restaurants (vegetarian, vegan, gluten-free, dairy-free)."},
		func(_ context.Context, in restaurantNamesIn) (restaurantDiets, Origin, error) {
			var out restaurantDiets
			out.Restaurants = []restaurantDiet{}
			err := restaurants(in.RestaurantNames, func(r travelRestaurant) {
				out.Restaurants = append(out.Restaurants, restaurantDiet{r.Name, r.DietaryRestrictions})
			})
			return out, Own, err
		})
	Tool(s, e, &mcp.Tool{Name: "get_contact_information_for_restaurants", Description: "Get the contact information of the given restaurants."},
		func(_ context.Context, in restaurantNamesIn) (restaurantContacts, Origin, error) {
			var out restaurantContacts
			out.Restaurants = []restaurantContact{}
			err := restaurants(in.RestaurantNames, func(r travelRestaurant) {
				out.Restaurants = append(out.Restaurants, restaurantContact{r.Name, r.ContactInformation})
			})
			return out, Own, err
		})
	Tool(s, e, &mcp.Tool{Name: "get_price_for_restaurants", Description: "Get the price per person of the given restaurants."},
		func(_ context.Context, in restaurantNamesIn) (restaurantPrices, Origin, error) {
			var out restaurantPrices
			out.Restaurants = []restaurantPrice{}
			err := restaurants(in.RestaurantNames, func(r travelRestaurant) {
				out.Restaurants = append(out.Restaurants, restaurantPrice{r.Name, r.PricePerPerson})
			})
			return out, Own, err
		})
	Tool(s, e, &mcp.Tool{Name: "check_restaurant_opening_hours", Description: "Get the opening hours and days of the given restaurants."},
		func(_ context.Context, in restaurantNamesIn) (restaurantHours, Origin, error) {
			var out restaurantHours
			out.Restaurants = []restaurantHour{}
			err := restaurants(in.RestaurantNames, func(r travelRestaurant) {
				out.Restaurants = append(out.Restaurants, restaurantHour{r.Name, r.OperatingHours})
			})
			return out, Own, err
		})

	// Car rental.
	companies := func(names []string, fn func(travelCarRental)) error {
		st, err := view()
		if err != nil {
			return err
		}
		for _, c := range st.CarRentals {
			if slices.Contains(names, c.Name) {
				fn(c)
			}
		}
		return nil
	}
	Tool(s, e, &mcp.Tool{Name: "get_all_car_rental_companies_in_city", Description: "Get the names of all car rental companies in the given city."},
		func(_ context.Context, in cityIn) (companiesInCity, Origin, error) {
			st, err := view()
			if err != nil {
				return companiesInCity{}, Own, err
			}
			out := companiesInCity{City: in.City, Companies: []string{}}
			for _, c := range st.CarRentals {
				if c.City == in.City {
					out.Companies = append(out.Companies, c.Name)
				}
			}
			return out, Own, nil
		})
	Tool(s, e, &mcp.Tool{Name: "get_car_types_available", Description: "Get the car types the given car rental companies have (sedan, SUV, convertible, …)."},
		func(_ context.Context, in companyNamesIn) (companyCarTypes, Origin, error) {
			var out companyCarTypes
			out.Companies = []companyCarType{}
			err := companies(in.CompanyName, func(c travelCarRental) {
				out.Companies = append(out.Companies, companyCarType{c.Name, nonNil(c.CarTypesAvailable)})
			})
			return out, Own, err
		})
	Tool(s, e, &mcp.Tool{Name: "get_rating_reviews_for_car_rental", Description: "Get the rating and the customers' reviews of the given car rental companies."},
		func(_ context.Context, in companyNamesIn) (companyReviews, Origin, error) {
			out := companyReviews{Companies: []ratingReviews{}}
			err := companies(in.CompanyName, func(c travelCarRental) {
				out.Companies = append(out.Companies, ratingReviews{c.Name, c.Rating, nonNil(c.Reviews)})
			})
			return out, reviewsOrigin(len(out.Companies)), err
		})
	Tool(s, e, &mcp.Tool{Name: "get_car_fuel_options", Description: "Get the fuel options of the given car rental companies (regular, premium, electric, …)."},
		func(_ context.Context, in companyNamesIn) (companyFuel, Origin, error) {
			var out companyFuel
			out.Companies = []companyFuelOption{}
			err := companies(in.CompanyName, func(c travelCarRental) {
				out.Companies = append(out.Companies, companyFuelOption{c.Name, nonNil(c.FuelOptions)})
			})
			return out, Own, err
		})
	Tool(s, e, &mcp.Tool{Name: "get_car_rental_address", Description: "Get the address of the given car rental companies."},
		func(_ context.Context, in companyNamesIn) (companyAddresses, Origin, error) {
			out := companyAddresses{Companies: []nameAddress{}}
			err := companies(in.CompanyName, func(c travelCarRental) {
				out.Companies = append(out.Companies, nameAddress{c.Name, c.Address})
			})
			return out, Own, err
		})
	Tool(s, e, &mcp.Tool{Name: "get_car_price_per_day", Description: "Get the price per day of the given car rental companies."},
		func(_ context.Context, in companyNamesIn) (companyPrices, Origin, error) {
			var out companyPrices
			out.Companies = []companyPrice{}
			err := companies(in.CompanyName, func(c travelCarRental) {
				out.Companies = append(out.Companies, companyPrice{c.Name, c.PricePerDay})
			})
			return out, Own, err
		})

	// Calendar.
	Tool(s, e, &mcp.Tool{Name: "create_calendar_event", Description: "Create an event in the user's calendar; every participant is sent an invitation by mail."},
		func(_ context.Context, in createEventIn) (travelEvent, Origin, error) {
			var ev travelEvent
			err := Update(e, func(st *travelState) error {
				if _, err := parseMinute(in.StartTime); err != nil {
					return fmt.Errorf("start_time: %w", err)
				}
				if _, err := parseMinute(in.EndTime); err != nil {
					return fmt.Errorf("end_time: %w", err)
				}
				participants := append([]string{}, in.Participants...)
				if !slices.Contains(participants, st.Calendar.Owner) {
					participants = append(participants, st.Calendar.Owner)
				}
				ev = travelEvent{
					ID:    nextID(len(st.Calendar.Events), func(i int) string { return st.Calendar.Events[i].ID }),
					Title: in.Title, Description: in.Description, StartTime: in.StartTime, EndTime: in.EndTime,
					Location: in.Location, Participants: participants, Status: "confirmed",
				}
				st.Calendar.Events = append(st.Calendar.Events, ev)
				if len(in.Participants) > 0 {
					st.Mailbox.send(in.Participants, nil, nil, "Invitation: "+in.Title, in.Description, st.Calendar.Today)
				}
				return nil
			})
			return ev, Own, err
		})
	Tool(s, e, &mcp.Tool{Name: "search_calendar_events", Description: "Find the calendar events whose title or description holds the query, on the given day if one is given."},
		func(_ context.Context, in searchEventsIn) (eventList, Origin, error) {
			st, err := view()
			if err != nil {
				return eventList{}, Own, err
			}
			out := eventList{Events: []travelEvent{}}
			q := strings.ToLower(in.Query)
			for _, ev := range st.Calendar.Events {
				if in.Date != "" && !strings.HasPrefix(ev.StartTime, in.Date) {
					continue
				}
				if strings.Contains(strings.ToLower(ev.Title), q) || strings.Contains(strings.ToLower(ev.Description), q) {
					out.Events = append(out.Events, ev.nonNil())
				}
			}
			if len(out.Events) == 0 {
				return out, Own, fmt.Errorf("no event matches; try another query")
			}
			return out, Own, nil
		})
	Tool(s, e, &mcp.Tool{Name: "get_day_calendar_events", Description: "Get the calendar events of the given day."},
		func(_ context.Context, in dayIn) (eventList, Origin, error) {
			if _, err := time.Parse(time.DateOnly, in.Day); err != nil {
				return eventList{}, Own, fmt.Errorf("day: want YYYY-MM-DD")
			}
			st, err := view()
			if err != nil {
				return eventList{}, Own, err
			}
			out := eventList{Events: []travelEvent{}}
			for _, ev := range st.Calendar.Events {
				if strings.HasPrefix(ev.StartTime, in.Day) {
					out.Events = append(out.Events, ev.nonNil())
				}
			}
			return out, Own, nil
		})
	Tool(s, e, &mcp.Tool{Name: "cancel_calendar_event", Description: "Cancel the event with the given ID; its participants are told by mail."},
		func(_ context.Context, in eventIDIn) (eventCanceled, Origin, error) {
			err := Update(e, func(st *travelState) error {
				for i := range st.Calendar.Events {
					ev := &st.Calendar.Events[i]
					if ev.ID == in.EventID {
						ev.Status = "canceled"
						st.Mailbox.send(ev.Participants, nil, nil, "Canceled: "+ev.Title, "The event has been canceled.", st.Calendar.Today)
						return nil
					}
				}
				return fmt.Errorf("no event has the ID %q", in.EventID)
			})
			return eventCanceled{EventID: in.EventID, Status: "canceled"}, Own, err
		})

	// Reservations: each is made in the user's name, with the user's phone
	// number.
	Tool(s, e, &mcp.Tool{Name: "reserve_hotel", Description: "Reserve a room at the given hotel, in the user's name."},
		func(_ context.Context, in reserveHotelIn) (reservationMade, Origin, error) {
			var out reservationMade
			err := Update(e, func(st *travelState) error {
				if !slices.ContainsFunc(st.Hotels, func(h travelHotel) bool { return h.Name == in.Hotel }) {
					return fmt.Errorf("no hotel is named %q", in.Hotel)
				}
				start, err := time.Parse(time.DateOnly, in.StartDay)
				if err != nil {
					return fmt.Errorf("start_day: want YYYY-MM-DD")
				}
				end, err := time.Parse(time.DateOnly, in.EndDay)
				if err != nil {
					return fmt.Errorf("end_day: want YYYY-MM-DD")
				}
				if !end.After(start) {
					return fmt.Errorf("end_day must come after start_day")
				}
				out.Reservation = travelReservation{Kind: "hotel", Title: in.Hotel, Start: in.StartDay, End: in.EndDay, ContactInformation: st.User.PhoneNumber}
				st.Reservations = append(st.Reservations, out.Reservation)
				out.Message = fmt.Sprintf("A room at %s is reserved from %s to %s.", in.Hotel, in.StartDay, in.EndDay)
				return nil
			})
			return out, Own, err
		})
	Tool(s, e, &mcp.Tool{Name: "reserve_car_rental", Description: "Reserve a car at the given car rental company, in the user's name."},
		func(_ context.Context, in reserveCarIn) (reservationMade, Origin, error) {
			var out reservationMade
			err := Update(e, func(st *travelState) error {
				if !slices.ContainsFunc(st.CarRentals, func(c travelCarRental) bool { return c.Name == in.Company }) {
					return fmt.Errorf("no car rental company is named %q", in.Company)
				}
				start, err := parseMinute(in.StartTime)
				if err != nil {
					return fmt.Errorf("start_time: %w", err)
				}
				end, err := parseMinute(in.EndTime)
				if err != nil {
					return fmt.Errorf("end_time: %w", err)
				}
				if !end.After(start) {
					return fmt.Errorf("end_time must come after start_time")
				}
				out.Reservation = travelReservation{Kind: "car", Title: in.Company, Start: in.StartTime, End: in.EndTime, ContactInformation: st.User.PhoneNumber}
				st.Reservations = append(st.Reservations, out.Reservation)
				out.Message = fmt.Sprintf("A car at %s is reserved from %s to %s.", in.Company, in.StartTime, in.EndTime)
				return nil
			})
			return out, Own, err
		})
	Tool(s, e, &mcp.Tool{Name: "reserve_restaurant", Description: "Reserve a table at the given restaurant, in the user's name, for two hours."},
		func(_ context.Context, in reserveRestaurantIn) (reservationMade, Origin, error) {
			var out reservationMade
			err := Update(e, func(st *travelState) error {
				if !slices.ContainsFunc(st.Restaurants, func(r travelRestaurant) bool { return r.Name == in.Restaurant }) {
					return fmt.Errorf("no restaurant is named %q", in.Restaurant)
				}
				start, err := parseMinute(in.StartTime)
				if err != nil {
					return fmt.Errorf("start_time: %w", err)
				}
				end := start.Add(2 * time.Hour).Format(minuteLayout)
				out.Reservation = travelReservation{Kind: "restaurant", Title: in.Restaurant, Start: in.StartTime, End: end, ContactInformation: st.User.PhoneNumber}
				st.Reservations = append(st.Reservations, out.Reservation)
				out.Message = fmt.Sprintf("A table at %s is reserved from %s to %s.", in.Restaurant, in.StartTime, end)
				return nil
			})
			return out, Own, err
		})

	// Flights.
	Tool(s, e, &mcp.Tool{Name: "get_flight_information", Description: "Get the flights from the departure city to the arrival city."},
		func(_ context.Context, in flightIn) (flightList, Origin, error) {
			st, err := view()
			if err != nil {
				return flightList{}, Own, err
			}
			out := flightList{Flights: []travelFlight{}}
			for _, f := range st.Flights {
				if f.DepartureCity == in.DepartureCity && f.ArrivalCity == in.ArrivalCity {
					out.Flights = append(out.Flights, f)
				}
			}
			return out, Own, nil
		})

	// Mail.
	Tool(s, e, &mcp.Tool{Name: "send_email", Description: "Send a mail from the user's address."},
		func(_ context.Context, in sendEmailIn) (travelEmail, Origin, error) {
			var sent travelEmail
			err := Update(e, func(st *travelState) error {
				if len(in.Recipients) == 0 {
					return fmt.Errorf("recipients: at least one address is needed")
				}
				sent = st.Mailbox.send(in.Recipients, in.Cc, in.Bcc, in.Subject, in.Body, st.Calendar.Today)
				if len(in.Attachments) > 0 {
					st.Mailbox.Emails[len(st.Mailbox.Emails)-1].Attachments = in.Attachments
					sent.Attachments = in.Attachments
				}
				return nil
			})
			return sent, Own, err
		})
}

// reviewsOrigin: reviews are written by guests, so an answer that holds any
// is a third party's.
func reviewsOrigin(n int) Origin {
	if n > 0 {
		return ThirdParty
	}
	return Own
}

const minuteLayout = "2006-01-02 15:04"

func parseMinute(s string) (time.Time, error) {
	t, err := time.Parse(minuteLayout, s)
	if err != nil {
		return t, fmt.Errorf("want YYYY-MM-DD HH:MM")
	}
	return t, nil
}

// nextID is one more than the largest numeric ID among n items.
func nextID(n int, id func(int) string) string {
	largest := -1
	for i := 0; i < n; i++ {
		var v int
		if _, err := fmt.Sscan(id(i), &v); err == nil && v > largest {
			largest = v
		}
	}
	return fmt.Sprint(largest + 1)
}

// send records a mail sent from the user's address.
func (m *travelMailbox) send(to, cc, bcc []string, subject, body, day string) travelEmail {
	mail := travelEmail{
		ID:          nextID(len(m.Emails), func(i int) string { return m.Emails[i].ID }),
		Sender:      m.Address,
		Recipients:  nonNil(append([]string{}, to...)),
		Cc:          nonNil(cc),
		Bcc:         nonNil(bcc),
		Subject:     subject,
		Body:        body,
		Attachments: []map[string]any{},
		Status:      "sent",
		Timestamp:   day,
	}
	m.Emails = append(m.Emails, mail)
	return mail
}

func (ev travelEvent) nonNil() travelEvent {
	ev.Participants = nonNil(ev.Participants)
	return ev
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
